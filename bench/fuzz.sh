#!/usr/bin/env bash
# bench/fuzz.sh — runs every cargo-fuzz target in fuzz/ for a given time and reports executions
# and coverage per target (the figures of docs/reliability.md).
#
# Why: coverage-guided fuzzing finds the inputs property tests do not think of; every crash it
# finds becomes a regression test. CI runs it briefly as a smoke check (.ci/run).
#
# What it does: installs cargo-fuzz from crates.io if missing; builds the targets with the
# installed stable toolchain (RUSTC_BOOTSTRAP=1 lets it take the nightly-only sanitizer flags;
# no nightly download), AddressSanitizer on, optimised like the shipped build (FUZZ_BUILD=-O;
# CI's smoke uses FUZZ_BUILD=--dev FUZZ_SANITIZER=none: a far cheaper build, coverage-guided
# all the same, debug assertions and overflow checks on, no leak or memory-error detection); seeds
# fuzz/corpus/<target> from the test suites (fuzz/seeds.py; the corpus keeps what earlier runs
# learned, it is not in git); runs each target for SECONDS (libFuzzer: -max_total_time, a 10 s
# per-input timeout, a 2 GiB RSS limit, leak detection on); prints one Markdown row per target.
# A crash, timeout or leak leaves its input in fuzz/artifacts/<target>/ and fails the script.
#
# How to run: bench/fuzz.sh [SECONDS] [TARGET...]   (default 60 s, every target)
# Tunables: CARGO_TARGET_DIR as usual; FUZZ_BUILD, cargo fuzz's build mode flag [-O];
# FUZZ_SANITIZER, cargo fuzz's --sanitizer (address, leak, memory, thread, none) [address].
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
build="${FUZZ_BUILD:--O}"
sanitizer="${FUZZ_SANITIZER:-address}"
shift || true
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "--- installing cargo-fuzz (crates.io)" >&2
  cargo install cargo-fuzz --locked
fi
mapfile -t targets < <(if [ "$#" -gt 0 ]; then printf '%s\n' "$@"; else cargo fuzz list; fi)
echo "--- building ${#targets[@]} fuzz targets" >&2
if [ "$#" -gt 0 ]; then
  for target in "${targets[@]}"; do
    cargo fuzz build "$build" --sanitizer "$sanitizer" "$target" >&2
  done
else
  cargo fuzz build "$build" --sanitizer "$sanitizer" >&2
fi
python3 seeds.py corpus
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=0
printf '| target | seconds | executions | execs/s | coverage (edges) | features | corpus | result |\n|---|---|---|---|---|---|---|---|\n'
for target in "${targets[@]}"; do
  log="$logs/$target.log"
  mkdir -p "corpus/$target" "artifacts/$target"
  if cargo fuzz run "$build" --sanitizer "$sanitizer" "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see fuzz/artifacts/$target/)"
    failed=1
    tail -40 "$log" >&2
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corpus="$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$target" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$result"
done
exit "$failed"
