#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and prints how many inputs each executed.
#   fuzz/smoke.sh [--dev] [SECONDS_PER_TARGET]      (default 10)
# --dev builds without optimisation: about half the build time for a fraction of the executions,
# the right trade for CI's few-second smoke run; long local runs leave it out.
# Works on the stable toolchain: `--sanitizer none` needs no -Z flag (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${1:-}" = "--dev" ]; then
  profile=(--dev)
  shift
fi
secs="${1:-10}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
cargo fuzz build "${profile[@]}" -s none
targets=$(cargo fuzz list)
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/corpus/$t.log"
  # New inputs go to the first (git-ignored) corpus directory; the committed seeds are read only.
  if ! cargo fuzz run "${profile[@]}" -s none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -dict=fuzz/oauth.dict -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $t FAILED: the crashing input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz $t: $runs executions in ${secs}s, no failure"
done
