#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Weak scaling of the distributed forward: N/rank fixed, 1 -> 2 -> 4 -> 8 ranks, one model (the paper's
# branches plus w = 65536 .. MAX_SEGMENT with r = w/2048). Prints a markdown table of the measured
# per-rank traffic (longnet::distributed::comm_stats) next to what an all-gather of the same sparse
# rows over the whole world (torchscale's scheme) would move, and the per-rank timings.
#
#   bench/bench_distributed.sh                 # BUILD_DIR=build, PER_RANK=64K, RANKS="1 2 4 8"
#   PER_RANK=256K HEADS=4 BACKWARD=1 bench/bench_distributed.sh
#
# Variables: BUILD_DIR, PER_RANK (tokens per rank, K/M suffix), RANKS, HEADS, DIM, TYPE (float|bf16),
# MAX_SEGMENT (default: PER_RANK x the largest rank count), CAUSAL=1, BACKWARD=1, MPIEXEC, MPI_FLAGS
# (default --oversubscribe), THREADS (OMP_NUM_THREADS per rank, default 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=${BUILD_DIR:-build}
PER_RANK=${PER_RANK:-64K}
RANKS=${RANKS:-"1 2 4 8"}
HEADS=${HEADS:-1}
DIM=${DIM:-64}
TYPE=${TYPE:-float}
MPIEXEC=${MPIEXEC:-mpiexec}
MPI_FLAGS=${MPI_FLAGS:---oversubscribe}
cores=$(nproc --all)
export OMP_NUM_THREADS=${THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}

exe="$BUILD_DIR/examples/longnet_distributed"
if [ ! -x "$exe" ]; then
  echo "bench_distributed.sh: $exe not found; build it: cmake --build $BUILD_DIR --target longnet_distributed" >&2
  exit 1
fi
to_tokens() {  # 64K -> 65536
  local v=$1 m=1
  case "$v" in *K|*k) m=1024; v=${v%?} ;; *M|*m) m=$((1024 * 1024)); v=${v%?} ;; esac
  echo $((v * m))
}
per_rank=$(to_tokens "$PER_RANK")
max_ranks=1
for p in $RANKS; do [ "$p" -gt "$max_ranks" ] && max_ranks=$p; done
max_segment=${MAX_SEGMENT:-$((per_rank * max_ranks))}
extra=()
[ "${CAUSAL:-0}" = 1 ] && extra+=(--causal)
[ "${BACKWARD:-0}" = 1 ] && extra+=(--backward)

echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(date -u +%Y-%m-%d)"
echo "model: paper branches + w = 65536 .. $max_segment (r = w/2048), H = $HEADS, D = $DIM, $TYPE, $per_rank tokens/rank, OMP_NUM_THREADS=$OMP_NUM_THREADS"
echo
printf '| ranks | N | long branches | sent = received per rank (measured) | whole-world all-gather per rank | fwd wall s | fwd CPU s/rank | comm s |%s\n' \
  "$([ "${BACKWARD:-0}" = 1 ] && echo ' bwd s | bwd bytes/rank |')"
printf '|---|---|---|---|---|---|---|---|%s\n' "$([ "${BACKWARD:-0}" = 1 ] && echo '---|---|')"
for p in $RANKS; do
  line=$("$MPIEXEC" -n "$p" $MPI_FLAGS "$exe" --tokens $((p * per_rank)) --heads "$HEADS" --dim "$DIM" --type "$TYPE" \
           --max-segment "$max_segment" --check-rows 2 "${extra[@]}" 2>/dev/null | grep '^result:')
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  sent=$(get bytes_per_rank); world=$(get world_allgather_bytes_per_rank)
  row=$(printf '| %s | %s | %s | %s B | %s B | %s | %s | %s |' "$p" "$(get tokens)" "$(get long_branches)" \
        "$sent" "$world" "$(get fwd_seconds)" "$(get cpu_seconds)" "$(get comm_seconds)")
  if [ "${BACKWARD:-0}" = 1 ]; then row="$row $(get bwd_seconds) | $(get bwd_bytes_per_rank) B |"; fi
  echo "$row"
  [ "$(get check)" = ok ] || { echo "bench_distributed.sh: the sampled-row check failed at $p ranks" >&2; exit 1; }
done
