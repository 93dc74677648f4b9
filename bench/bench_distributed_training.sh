#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Weak scaling of distributed training (issue 13): tokens per rank fixed, 1 -> 2 -> 4 -> 8 ranks, one
# sequence split across all of them (sequence parallelism, --data-parallel 1), training steps of
# examples/longnet_train under mpirun. Prints a markdown table per rank count: per-rank compute (thread CPU
# outside collectives, largest rank), wall time per step, attention bytes sent per rank per step
# (measured: longnet::distributed's comm_stats, forward + backward of every layer), what a whole-world
# all-gather of the same selected K/V rows (torchscale's scheme; its backward reduce-scatters the same
# amount) would send per rank, and the gradient all-reduce (measured buffer; a ring sends 2(W-1)/W of it).
#
#   bench/bench_distributed_training.sh                  # BUILD_DIR=build, PER_RANK=4096, RANKS="1 2 4 8"
#   BUILD_DIR=build-dist PER_RANK=2048 STEPS=4 bench/bench_distributed_training.sh
#
# Variables: BUILD_DIR, PER_RANK (tokens per rank), RANKS, STEPS (the first is a warm-up, not counted),
# CONFIG (--random-config size, default small: D = 256, 4 heads, FFN 1024, 4 layers), SEGMENTS/DILATIONS
# (default 1024,4096,8192,16384,32768 / 1,4,8,16,32: two local branches, three that span 2, 4, 8 ranks at
# PER_RANK = 4096), TEXT (training bytes; default a GPL text Debian ships), MPIEXEC, MPI_FLAGS (default
# --oversubscribe), THREADS (OMP_NUM_THREADS per rank, default 1: the CPU figures count one thread).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=${BUILD_DIR:-build}
PER_RANK=${PER_RANK:-4096}
RANKS=${RANKS:-"1 2 4 8"}
STEPS=${STEPS:-3}
CONFIG=${CONFIG:-small}
SEGMENTS=${SEGMENTS:-1024,4096,8192,16384,32768}
DILATIONS=${DILATIONS:-1,4,8,16,32}
TEXT=${TEXT:-/usr/share/common-licenses/GPL-3}
MPIEXEC=${MPIEXEC:-mpiexec}
MPI_FLAGS=${MPI_FLAGS:---oversubscribe}
export OMP_NUM_THREADS=${THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}

exe="$BUILD_DIR/examples/longnet_train"
if [ ! -x "$exe" ]; then
  echo "bench_distributed_training.sh: $exe not found; build it: cmake --build $BUILD_DIR --target longnet_train" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc --all) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d)"
echo "model: --random-config $CONFIG, segments $SEGMENTS, dilations $DILATIONS, float, $PER_RANK tokens per rank, batch 1, OMP_NUM_THREADS=$OMP_NUM_THREADS; mean of steps 2..$STEPS"
echo
echo "| ranks | N | compute s/step (max rank) | wall s/step | attention sent/rank/step (measured) | whole-world all-gather/rank/step | gradient all-reduce buffer | ring all-reduce sent/rank |"
echo "|---|---|---|---|---|---|---|---|"
for p in $RANKS; do
  n=$((p * PER_RANK))
  "$MPIEXEC" -n "$p" $MPI_FLAGS "$exe" --random-config "$CONFIG" --segment-length "$SEGMENTS" --dilated-ratio "$DILATIONS" \
    --text "$TEXT" --seq-len "$n" --batch 1 --steps "$STEPS" --lr 1e-4 --out "$work/p$p" > "$work/p$p.txt" 2>&1 || {
      echo "bench_distributed_training.sh: the run with $p ranks failed:" >&2; tail -5 "$work/p$p.txt" >&2; exit 1; }
  python3 - "$work/p$p/log.jsonl" "$p" "$PER_RANK" "$SEGMENTS" "$DILATIONS" "$CONFIG" <<'EOF'
import json, sys
log, P, n, segs, dils, config = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
lines = [json.loads(l) for l in open(log) if l.strip()][1:]  # step 1: warm-up
mean = lambda k: sum(float(l.get(k, 0)) for l in lines) / len(lines)
dim, heads, layers = {"tiny": (64, 4, 2), "small": (256, 4, 4), "base": (768, 12, 12)}[config]
hd, N = dim // heads, P * n
world = 0.0  # torchscale: every long branch all-gathers its selected K/V rows over all P ranks; backward the same
for w, r in zip(map(int, segs.split(",")), map(int, dils.split(","))):
    if min(w, N) > n:
        world += 2 * (P - 1) * (n // r) * heads * hd * 4
world *= 2 * layers
grad = mean("gradient_bytes")
cpu = mean("max_cpu_seconds_compute")
sent = mean("max_attention_bytes_sent")
mb = lambda b: f"{b / 1e6:.2f} MB"
print(f"| {P} | {N:,} | {cpu:.2f} | {mean('seconds'):.2f} | {mb(sent)} | {mb(world)} | {mb(grad)} | {mb(2 * (P - 1) / P * grad)} |")
EOF
done
