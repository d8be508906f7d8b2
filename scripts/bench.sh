#!/usr/bin/env bash
# The side-by-side performance benchmark (README "Performance"): builds the release
# binaries, starts a throwaway PostgreSQL on 127.0.0.1 unless FLOWGATE_BENCH_POSTGRES_URL
# names one (the way scripts/test.sh does), raises the open-file limit for the idle
# connections, and runs target/release/flowgate-bench. Arguments go to flowgate-bench
# (`--smoke`, `--seconds N`, `--rounds N`, `--help`); BENCH_NO_BUILD=1 skips the build, and
# BENCH_BIN_DIR points at binaries built elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  cargo build --release -p flowgate-gateway -p flow-service -p flowgate-bench
fi

if [ -z "${FLOWGATE_BENCH_POSTGRES_URL:-}" ]; then
  # Debian keeps the server programs, all together, out of PATH; elsewhere they are on it.
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    bin=""
    command -v initdb >/dev/null 2>&1 && bin="$(dirname "$(command -v initdb)")"
  fi
  if [ -z "$bin" ]; then
    echo "scripts/bench.sh: PostgreSQL is not installed: its runs are skipped" >&2
  else
    dir="$(mktemp -d /tmp/flowgate-bench-pg.XXXXXX)"
    # initdb and postgres refuse to run as root: run them as the `postgres` user then.
    as_owner=()
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
      chown postgres "$dir"
      as_owner=(runuser -u postgres --)
    fi
    stop_postgres() {
      "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
      rm -rf "$dir"
    }
    trap stop_postgres EXIT

    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U flowgate --auth=trust \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # Durable commits, as a real deployment has them (unlike the test cluster); loopback only.
    port=""
    for _ in $(seq 1 20); do
      candidate=$((20000 + RANDOM % 20000))
      if "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
           -o "-c listen_addresses=127.0.0.1 -p $candidate -k $dir -c max_connections=300" \
           start >/dev/null; then
        port=$candidate
        break
      fi
    done
    if [ -z "$port" ]; then
      echo "scripts/bench.sh: PostgreSQL did not start; its log:" >&2
      cat "$dir/server.log" >&2
      exit 1
    fi
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U flowgate flowgate_bench
    export FLOWGATE_BENCH_POSTGRES_URL="postgres://flowgate@127.0.0.1:$port/flowgate_bench"
    echo "scripts/bench.sh: throwaway PostgreSQL at $FLOWGATE_BENCH_POSTGRES_URL" >&2
  fi
fi

# Thousands of idle connections need as many file descriptors in this process too.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec_dir="${BENCH_BIN_DIR:-target/release}"
"$exec_dir/flowgate-bench" "$@"
