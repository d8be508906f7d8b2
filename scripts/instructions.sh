#!/usr/bin/env bash
# Instructions per plain request of one server, counted by valgrind's callgrind: a number
# that, unlike CPU time, does not move with the machine's speed, so a change of a few
# per cent in the gateway's or the flow service's own work can be seen at all (README
# "Performance"). User space only: the kernel's share of a request is not counted.
#
#   scripts/instructions.sh [gateway|flow-service]     (default: gateway)
#
# Drives the release binaries with flowgate-bench (`--only plain --store memory`, 8
# connections), once for 3 s and once for 9 s, with the chosen server under callgrind;
# the difference of the two runs' counts over the difference of their requests is the
# cost of one request, start-up and TLS handshakes cancelling out. Needs the release
# build (`scripts/bench.sh` makes it, or `cargo build --release -p flowgate-gateway
# -p flow-service -p flowgate-bench`), valgrind (Debian: `apt-get install valgrind`) and
# python3. The 9 s run's profile is kept for `callgrind_annotate`. Also prints the
# allocations per plain request: calls to mimalloc's `mi_malloc_aligned`, where both
# servers' Rust allocations go (`__rust_alloc` calls it, or, with LTO, its callers do);
# zeroed allocations, reallocations and C's own `malloc`s (aws-lc's) are not counted.
# Unlike the instructions, they have not moved between runs of one build.
set -euo pipefail
cd "$(dirname "$0")/.."

server="${1:-gateway}"
case "$server" in
  gateway) binary=flowgate-gateway other=flow-service ;;
  flow-service) binary=flow-service other=flowgate-gateway ;;
  *) echo "usage: scripts/instructions.sh [gateway|flow-service]" >&2; exit 2 ;;
esac
release="$PWD/target/release"
for b in flowgate-gateway flow-service flowgate-bench; do
  [ -x "$release/$b" ] || { echo "scripts/instructions.sh: $release/$b is not built" >&2; exit 1; }
done
for tool in valgrind python3; do
  command -v "$tool" >/dev/null || { echo "scripts/instructions.sh: $tool is not installed" >&2; exit 1; }
done

out="$PWD/target/instructions"
mkdir -p "$out"
work="$(mktemp -d /tmp/flowgate-instructions.XXXXXX)"

# Ends every server started under callgrind (SIGTERM: callgrind writes its counts on
# the way out) and waits until each has exited.
stop_servers() {
  [ -s "$work/pids" ] || return 0
  local pid
  while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$work/pids"
  while read -r pid; do
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  done <"$work/pids"
}
trap 'stop_servers; rm -rf "$work"' EXIT

# The bench runs whatever `BENCH_BIN_DIR` holds. It stops a server by killing it and its
# descendants with SIGKILL, which would lose callgrind's counts; so the measured
# server's stand-in starts it under callgrind outside its own process tree (in a
# subshell that exits at once, in a session of its own), notes its pid, and only sleeps.
# This script ends the server itself, with SIGTERM.
ln -s "$release/$other" "$work/$other"
{
  echo '#!/usr/bin/env bash'
  printf 'case "${1:-}" in keygen|healthcheck) exec %q "$@" ;; esac\n' "$release/$binary"
  # shellcheck disable=SC2016 # expanded by the inner bash
  printf '( setsid bash -c %q server %q %q %q %q "$@" & )\n' \
    'echo $$ >>"$1"; out=$2 log=$3; shift 3; exec valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >>"$log" 2>&1' \
    "$work/pids" "$work/callgrind.%p.out" "$work/server.log" "$release/$binary"
  echo 'exec sleep infinity'
} >"$work/$binary"
chmod +x "$work/$binary"

fail() {
  echo "scripts/instructions.sh: $1; the bench's output and the server's log:" >&2
  cat "$work/bench.log" "$work/server.log" >&2 2>/dev/null || true
  exit 1
}

# Prints "<instructions> <requests>" of one run of $1 seconds.
run() {
  : >"$work/pids"
  rm -f "$work"/callgrind.*.out
  BENCH_BIN_DIR="$work" "$release/flowgate-bench" --only plain --store memory --no-pywa \
    --connections 8 --idle-connections 0 --seconds "$1" --out "$work/results.json" \
    >"$work/bench.log" 2>&1 || fail "the bench failed"
  # The server that answered is the last one started (the bench starts a server again
  # when the first is not ready in time).
  local pid
  pid="$(tail -n 1 "$work/pids")"
  stop_servers
  local counts="$work/callgrind.$pid.out"
  grep -qs '^totals:' "$counts" || fail "callgrind wrote no counts"
  python3 - "$work/results.json" "$counts" <<'EOF' || fail "the run is not usable"
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
errors = run["non_2xx"] + run["wrong_answers"] + run["failed_connections"]
if errors:
    sys.exit(f"{errors} error answers or failed connections")
# The instructions, and the calls to the allocator: callgrind names a function
# once with its id ("fn=(12) name" or "cfn=(12) name") and by the id alone after that;
# a "calls=" line counts the calls to the last "cfn=" named.
names, callee, allocations, totals = {}, None, 0, None
for line in open(sys.argv[2], errors="replace"):
    if line.startswith(("fn=(", "cfn=(")):
        id, _, name = line.split("=", 1)[1].strip().partition(" ")
        if name:
            names[id] = name
        if line.startswith("cfn="):
            callee = names.get(id)
    elif line.startswith("calls=") and callee == "mi_malloc_aligned":
        allocations += int(line[6:].split()[0])
    elif line.startswith("totals:"):
        totals = line.split()[1]
if not allocations:
    sys.exit("no call to mi_malloc_aligned found in callgrind's counts")
print(totals, run["requests"], allocations)
EOF
  if [ "$1" = 9 ]; then
    cp "$counts" "$out/$server.callgrind.out"
  fi
}

short="$(run 3)"
long="$(run 9)"
python3 - "$server" $short $long "$out/$server.callgrind.out" <<'EOF'
import sys
server, (si, sr, sa, li, lr, la), profile = sys.argv[1], map(int, sys.argv[2:8]), sys.argv[8]
if lr <= sr:
    sys.exit(f"scripts/instructions.sh: the 9 s run answered no more requests ({lr}) than the 3 s run ({sr})")
print(f"{server}: {round((li - si) / (lr - sr)):,} instructions and "
      f"{(la - sa) / (lr - sr):.1f} allocations per plain request "
      f"({sr:,} and {lr:,} requests; the 9 s run's profile: {profile})")
EOF
