#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run one libFuzzer target for a bounded time (one process, niced), seeded from tests/fuzz/corpus/TARGET
# with its dictionary; print the final coverage and execution figures. See docs/reliability.md.
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]      TARGET: npy token_shard varlen safetensors decoder_config checkpoint train_state cli
#
# Build first:  cmake --preset fuzz && cmake --build --preset fuzz      (clang, libclang-rt-14-dev)
# Environment:  LONGNET_FUZZ_BUILD  build folder (default build/fuzz)
#               LONGNET_FUZZ_WORK   working corpus and crash folder (default <build>/fuzz-work/TARGET)
#               LONGNET_FUZZ_CLI_TOOL=K (0-5)  target cli only: every input goes to selector K, one tool's
#                                   parser (tests/fuzz/fuzz_cli.cpp; 4 longnet_train, 5 longnet_distributed)
# Exit 0: no defect found. Exit 1: a defect (crash, leak, timeout, broken check, memory limit); the input
# is in <work>/crashes/ and goes to tests/fuzz/regressions/TARGET/ once the defect is fixed.
# Inputs the run found that add coverage stay in <work>/corpus (not in the repository).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,15p' "$0"; exit 2; }
[ $# -ge 2 ] || usage
target=$1
seconds=$2
shift 2
case "$target" in
  npy|token_shard|varlen|safetensors|decoder_config|checkpoint|train_state|cli) ;;
  *) echo "fuzz.sh: unknown target '$target' (npy, token_shard, varlen, safetensors, decoder_config, checkpoint, train_state, cli)" >&2; exit 2 ;;
esac
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS must be a positive whole number, got '$seconds'" >&2
  exit 2
fi

build="${LONGNET_FUZZ_BUILD:-$root/build/fuzz}"
binary="$build/tests/fuzz_$target"
if [ ! -x "$binary" ]; then
  echo "fuzz.sh: $binary not found; build it with: cmake --preset fuzz && cmake --build --preset fuzz" >&2
  exit 2
fi
work="${LONGNET_FUZZ_WORK:-$build/fuzz-work/$target}"
mkdir -p "$work/corpus" "$work/crashes"
log="$work/last-run.log"

# -timeout: one input running longer is a hang; -rss_limit_mb/-malloc_limit_mb: a reader that allocates
# more than 2 GiB for an input of a few KiB is a defect; -max_len: inputs up to 64 KiB.
set +e
nice -n 10 "$binary" "$work/corpus" "$root/tests/fuzz/corpus/$target" \
  -dict="$root/tests/fuzz/dict/$target.dict" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$work/crashes/" "$@" >"$log" 2>&1
rc=$?
set -e

# Summary: the last status line (#execs, cov, ft, corpus) and the final stats.
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
echo "fuzz.sh: $target, ${seconds} s: ${last:-no status line} (executions: ${execs:-?})"
if [ $rc -ne 0 ]; then
  echo "fuzz.sh: $target: DEFECT found (libFuzzer exit $rc); log: $log" >&2
  grep -E 'ERROR|FUZZ_CHECK|SUMMARY|Test unit written|terminate called|what\(\)' "$log" | head -n 20 >&2 || true
  exit 1
fi
