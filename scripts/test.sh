#!/usr/bin/env bash
# The whole test suite: unit tests, end-to-end tests, and the store tests against a
# real PostgreSQL. Unless FLOWGATE_TEST_POSTGRES_URL names a server already, starts a
# throwaway PostgreSQL cluster on 127.0.0.1 (a free port, a temporary directory) and
# removes it afterwards. Arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo-nextest is not installed (cargo install --locked cargo-nextest)" >&2
  exit 1
fi

if [ -z "${FLOWGATE_TEST_POSTGRES_URL:-}" ]; then
  # Debian keeps the server programs, all together, out of PATH; elsewhere they are on it.
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    bin=""
    command -v initdb >/dev/null 2>&1 && bin="$(dirname "$(command -v initdb)")"
  fi
  if [ -z "$bin" ]; then
    echo "scripts/test.sh: PostgreSQL is not installed (Debian: apt-get install postgresql)," >&2
    echo "or set FLOWGATE_TEST_POSTGRES_URL=postgres://USER:PASSWORD@HOST:PORT/DB" >&2
    exit 1
  fi

  dir="$(mktemp -d /tmp/flowgate-pg.XXXXXX)"
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
  # TLS beside plain connections, for the tests of TLS to the database: a throwaway CA
  # (FLOWGATE_TEST_POSTGRES_CA) and the server's certificate for 127.0.0.1, signed by it.
  tls=()
  if command -v openssl >/dev/null 2>&1; then
    {
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=flowgate test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/server.key" -out "$dir/server.csr" &&
      printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext" &&
      openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt"
    } >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; exit 1; }
    # The server refuses a key that others can read.
    chmod 600 "$dir/server.key"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/server.key" "$dir/server.crt"; fi
    tls=(-c ssl=on -c "ssl_cert_file=$dir/server.crt" -c "ssl_key_file=$dir/server.key")
    export FLOWGATE_TEST_POSTGRES_CA="$dir/ca.crt"
  else
    echo "scripts/test.sh: openssl is not installed: the tests of TLS to PostgreSQL skip" >&2
  fi
  # A throwaway cluster: loopback only, no durability needed, enough connections
  # for parallel tests (each service replica opens a few).
  port=""
  for _ in $(seq 1 20); do
    candidate=$((20000 + RANDOM % 20000))
    if "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
         -o "-c listen_addresses=127.0.0.1 -p $candidate -k $dir -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
             ${tls[*]}" \
         start >/dev/null; then
      port=$candidate
      break
    fi
  done
  if [ -z "$port" ]; then
    echo "scripts/test.sh: PostgreSQL did not start; its log:" >&2
    cat "$dir/server.log" >&2
    exit 1
  fi
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U flowgate flowgate_test
  export FLOWGATE_TEST_POSTGRES_URL="postgres://flowgate@127.0.0.1:$port/flowgate_test"
  echo "scripts/test.sh: throwaway PostgreSQL at $FLOWGATE_TEST_POSTGRES_URL"
fi

cargo nextest run --workspace "$@"
