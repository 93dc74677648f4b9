#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build and run the longnet benchmark suite, the memory probe, and the plot (see docs/benchmarks.md).
#
#   scripts/run_benchmarks.sh [extra longnet_bench flags...]
#
# Environment (all optional):
#   BUILD_DIR     build directory                       (default: build-bench)
#   OUT_DIR       where JSON, logs and the table go      (default: $BUILD_DIR/results)
#   PLOT          PNG to write                           (default: docs/bench.png)
#   REPETITIONS   repetitions of benchmarks that do not fix their own (dilated); medians reported
#                                                        (default: 3)
#   MAX_SEQ       skip sizes above this N                (default: all, up to 4194304)
#   JOBS          build parallelism                      (default: 2)
#   MEMORY_PROBE  0 to skip the memory probe             (default: 1)
#   PYTHON        interpreter with matplotlib            (default: first python3 that has it)
# Example, a quick run: MAX_SEQ=65536 REPETITIONS=1 scripts/run_benchmarks.sh --benchmark_filter='Dilated|OneDNN'
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build-bench}"
OUT_DIR="${OUT_DIR:-$BUILD_DIR/results}"
PLOT="${PLOT:-docs/bench.png}"
REPETITIONS="${REPETITIONS:-3}"
JOBS="${JOBS:-2}"
MEMORY_PROBE="${MEMORY_PROBE:-1}"
cd "$ROOT"

if [[ ! -x "$BUILD_DIR/bench/longnet_bench" || ! -x "$BUILD_DIR/bench/longnet_memory_probe" ]]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DLONGNET_BUILD_BENCHMARKS=ON \
        -DLONGNET_BUILD_TESTS=OFF -DLONGNET_BUILD_EXAMPLES=OFF
fi
# always rebuild: a stale binary would measure an old kernel
cmake --build "$BUILD_DIR" --target longnet_bench longnet_memory_probe -j "$JOBS"

mkdir -p "$OUT_DIR"
echo "== machine" | tee "$OUT_DIR/machine.txt"
{ lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L[123])' || true
  "${CXX:-c++}" --version | head -n1 || true
  echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-<unset>}"
  uptime; } | tee -a "$OUT_DIR/machine.txt"

bench_args=(--benchmark_out="$OUT_DIR/bench.json" --benchmark_out_format=json
            --benchmark_repetitions="$REPETITIONS" --benchmark_report_aggregates_only=true)
if [[ -n "${MAX_SEQ:-}" ]]; then bench_args+=(--longnet_max_seq="$MAX_SEQ"); fi

echo "== longnet_bench ${bench_args[*]} $*"
"$BUILD_DIR/bench/longnet_bench" "${bench_args[@]}" "$@" 2>&1 | tee "$OUT_DIR/bench.txt"

if [[ "$MEMORY_PROBE" == 1 ]]; then
  probe_seq=4194304
  if [[ -n "${MAX_SEQ:-}" && "$MAX_SEQ" -lt "$probe_seq" ]]; then probe_seq="$MAX_SEQ"; fi
  echo "== longnet_memory_probe --seq $probe_seq --heads 1 --dim 64 --type float"
  "$BUILD_DIR/bench/longnet_memory_probe" --seq "$probe_seq" --heads 1 --dim 64 --type float \
    | tee "$OUT_DIR/memory.json"
fi

# an interpreter that can plot (pyenv shims may hide the Debian python3-matplotlib)
if [[ -z "${PYTHON:-}" ]]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import matplotlib' 2>/dev/null; then PYTHON="$candidate"; break; fi
  done
  PYTHON="${PYTHON:-python3}"
fi
echo "== $PYTHON scripts/plot_bench.py $OUT_DIR/bench.json $PLOT"
"$PYTHON" scripts/plot_bench.py "$OUT_DIR/bench.json" "$PLOT" | tee "$OUT_DIR/results.md"
