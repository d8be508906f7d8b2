#!/usr/bin/env bash
# Fuzzing smoke run: builds every cargo-fuzz target in fuzz/ once, then runs each for
# SECONDS (default 20), one after the other on one core, starting from the committed
# seeds (fuzz/seeds/<target>/). Fails on the first crash, panic, leak, timeout (10 s) or
# memory blow-up (2 GiB); libFuzzer leaves the input in fuzz/artifacts/<target>/.
# New inputs go to fuzz/corpus/<target>/ (not committed).
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz
# if it is missing.
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz missing: installing it from crates.io"
  cargo install --locked cargo-fuzz
fi

echo "== cargo fuzz build (all targets)"
cargo +nightly fuzz build

targets=$(cargo +nightly fuzz list)
for target in $targets; do
  echo "== $target: ${seconds}s"
  mkdir -p "fuzz/corpus/$target"
  if ! cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 2>"fuzz/corpus/$target.log"; then
    tail -n 60 "fuzz/corpus/$target.log" >&2
    echo "scripts/fuzz.sh: $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|Done )' "fuzz/corpus/$target.log" || true
done
echo "== fuzzing: every target ran ${seconds}s without a finding"
