#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The gradient all-reduce overlapped with the backward (distributed_options::bucket_bytes, longnet_train
# --bucket-bytes): training steps of examples/longnet_train under mpirun with the blocking all-reduce
# after the backward (--bucket-bytes 0) and with buckets of each size in BUCKETS, the runs interleaved
# ROUNDS times (a shared machine drifts). Prints a markdown table: median wall seconds per step, the
# blocking all-reduce's seconds (rank 0's log), the bucketed all-reduce's duration and its exposed part
# (the rank's time in the all-reduce's code: packing, polling, the final wait; and of it the end) and the
# in-run hidden fraction 1 − exposed/duration (an upper bound: a bucket's completion is seen only at the
# next layer's end), the share of the blocking all-reduce's seconds it no longer spends (1 − exposed /
# blocking all-reduce s), and the step time saved against the blocking run as a fraction of the blocking
# all-reduce. Medians over the steps after the first of every round.
#
#   bench/bench_allreduce_overlap.sh       # BUILD_DIR=build, 2 ranks, --data-parallel 2, small, 2048 tokens
#   BUILD_DIR=build-ov RANKS=2 DATA_PARALLEL=1 SEQ_LEN=4096 BATCH=1 bench/bench_allreduce_overlap.sh
#
# Variables: BUILD_DIR, RANKS, DATA_PARALLEL, CONFIG (--random-config), SEQ_LEN, BATCH, STEPS, ROUNDS,
# BUCKETS (bytes, space-separated; default 1 MiB and 25 MiB), TEXT, MPIEXEC, MPI_FLAGS, THREADS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=${BUILD_DIR:-build}
RANKS=${RANKS:-2}
DATA_PARALLEL=${DATA_PARALLEL:-2}
CONFIG=${CONFIG:-small}
SEQ_LEN=${SEQ_LEN:-2048}
BATCH=${BATCH:-2}
STEPS=${STEPS:-6}
ROUNDS=${ROUNDS:-3}
BUCKETS=${BUCKETS:-"1048576 26214400"}
TEXT=${TEXT:-/usr/share/common-licenses/GPL-3}
MPIEXEC=${MPIEXEC:-mpiexec}
MPI_FLAGS=${MPI_FLAGS:---oversubscribe}
export OMP_NUM_THREADS=${THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}

exe="$BUILD_DIR/examples/longnet_train"
if [ ! -x "$exe" ]; then
  echo "bench_allreduce_overlap.sh: $exe not found; build it: cmake --build $BUILD_DIR --target longnet_train" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc --all) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d)"
echo "run: $RANKS ranks, --data-parallel $DATA_PARALLEL, --random-config $CONFIG, --seq-len $SEQ_LEN --batch $BATCH, float, OMP_NUM_THREADS=$OMP_NUM_THREADS; $ROUNDS rounds of $STEPS steps (first of each dropped)"
for round in $(seq "$ROUNDS"); do
  for b in 0 $BUCKETS; do
    "$MPIEXEC" -n "$RANKS" $MPI_FLAGS "$exe" --random-config "$CONFIG" --text "$TEXT" --seq-len "$SEQ_LEN" --batch "$BATCH" \
      --data-parallel "$DATA_PARALLEL" --steps "$STEPS" --lr 1e-4 --bucket-bytes "$b" --out "$work/b$b-r$round" \
      > "$work/b$b-r$round.txt" 2>&1 || {
        echo "bench_allreduce_overlap.sh: the run with --bucket-bytes $b failed:" >&2; tail -5 "$work/b$b-r$round.txt" >&2; exit 1; }
  done
done
python3 - "$work" "$ROUNDS" 0 $BUCKETS <<'EOF'
import glob, json, statistics, sys
work, rounds, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
def steps(b):
    out = []
    for r in range(1, rounds + 1):
        out += [json.loads(l) for l in open(f"{work}/b{b}-r{r}/log.jsonl") if l.strip()][1:]
    return out
med = lambda lines, k: statistics.median(float(l[k]) for l in lines)
base = steps(0)
t0, ar0 = med(base, "seconds"), med(base, "seconds_allreduce")
print()
print("| --bucket-bytes | wall s/step (median) | all-reduce s | exposed s | of which at the end | hidden, in-run bound (1 − exposed/all-reduce) | hidden vs blocking (1 − exposed/blocking all-reduce) | step saved / blocking all-reduce |")
print("|---|---|---|---|---|---|---|---|")
for b in sizes:
    s = steps(b)
    t = med(s, "seconds")
    name = "0 (blocking)" if b == 0 else (f"{b / 2**20:g} MiB")
    saved = "—" if b == 0 else f"{(t0 - t) / ar0:+.2f}"
    ex = med(s, "seconds_allreduce_exposed")
    vs = "—" if b == 0 else f"{1 - ex / ar0:+.2f}"
    print(f"| {name} | {t:.3f} | {med(s, 'seconds_allreduce'):.4f} | {ex:.4f} | {med(s, 'seconds_allreduce_wait'):.4f} | "
          f"{med(s, 'allreduce_hidden_fraction'):.2f} | {vs} | {saved} |")
print(f"\ngradient buffer: {base[0]['gradient_bytes'] / 1e6:.2f} MB")
EOF
