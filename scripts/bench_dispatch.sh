#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runtime ISA dispatch, measured: the portable build (no -march: the kernels are picked at run time)
# against the -march=native build, on the paper configuration (w = 2048..32768, r = 1,2,4,6,12, float,
# non-causal, B = 1, H = 4, D = 64), in one run: the two binaries alternate, ROUNDS times each, so load
# on a shared machine falls on both alike. Prints every run and the medians; docs/benchmarks.md has the
# figures and the machine.
#
#   scripts/bench_dispatch.sh [N] [ROUNDS] [DTYPE]   (default N = 1048576, ROUNDS = 5, DTYPE = float32;
#                                                   bfloat16: the bf16 dot-product path where it runs)
#
# Builds (or brings up to date) longnet_attend in build-bench/native (LONGNET_NATIVE=ON) and
# build-bench/portable (LONGNET_NATIVE=OFF). LONGNET_ISA (avx2, avx512, native) steers the portable one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-1048576}
rounds=${2:-5}
dtype=${3:-float32}
case $dtype in
  float32 | bfloat16) ;;
  *) echo "bench_dispatch.sh: DTYPE \"$dtype\": expected float32 or bfloat16" >&2; exit 2 ;;
esac
for kind in native portable; do
  dir=build-bench/$kind
  if [[ ! -f $dir/CMakeCache.txt ]]; then
    native=ON
    [[ $kind == portable ]] && native=OFF
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLONGNET_NATIVE=$native -DLONGNET_BUILD_TESTS=OFF \
          -DLONGNET_BUILD_BENCHMARKS=OFF >/dev/null
  fi
  cmake --build "$dir" -j 2 --target longnet_attend >/dev/null
done
grep -m1 'model name' /proc/cpuinfo || true
echo "N = $n, paper configuration, $dtype, $rounds rounds; seconds of one forward per run"
declare -A runs
for ((i = 1; i <= rounds; ++i)); do
  for kind in native portable; do
    out=$(build-bench/$kind/examples/longnet_attend --random "1,$n,4,64" --segments 2048,4096,8192,16384,32768 \
          --dilations 1,2,4,6,12 --dtype "$dtype" --repeat 1 | tail -n 1)
    s=$(sed -E 's/.*"seconds":([0-9.e+-]+).*/\1/' <<<"$out")
    g=$(sed -E 's/.*"gflops":([0-9.e+-]+).*/\1/' <<<"$out")
    isa=$(sed -E 's/.*"simd":"([^"]*)".*/\1/' <<<"$out")
    if [[ $dtype == bfloat16 ]]; then
      isa+=$(sed -E 's/.*"bf16_dot":(true|false).*"bf16_amx":(true|false).*/, bf16 dot \1, AMX \2/' <<<"$out")
    fi
    printf '%-9s round %d: %8.3f s  %7.1f GFLOP/s  (%s)\n' "$kind" "$i" "$s" "$g" "$isa"
    runs[$kind]+="$s "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mn=$(median "${runs[native]}")
mp=$(median "${runs[portable]}")
awk -v a="$mn" -v b="$mp" 'BEGIN { printf "median: native %.3f s, portable %.3f s, portable/native time %.3f\n", a, b, b / a }'
