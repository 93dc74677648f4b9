#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# examples/longnet_train under mpirun (issue 13): CTest runs it as test_train_mpi_cli.
#   usage: test_train_mpi_cli.sh MPIEXEC "PREFLAGS" LONGNET_TRAIN WORK_DIR TEXT_FILE
# Checks, each with a time limit (a hang fails the test):
#   1. 2 ranks (one sequence split in two, a long branch spanning both) train as the single process:
#      per-step losses within 1e-9 relative (double); 4 ranks as 2 x 2 (--data-parallel 2) too, and
#      with --bucket-bytes 2048 (the all-reduce in buckets overlapping the backward) the same losses;
#      --bucket-bytes -1 is a usage error (exit 2) naming the value;
#   2. rank 0 alone writes: log.jsonl, checkpoint, --save file; other ranks write nothing;
#   3. --resume with the same ranks: the final model is bitwise the uninterrupted run's;
#   4. an error all ranks agree on (sequence length that does not split): exit 1, one clear message;
#   5. a failure on rank 0 alone (--out cannot be created): the job ends with a non-zero exit, no hang;
#   6. a rank killed (SIGKILL) mid-run: mpirun ends non-zero, no hang; the last checkpoint resumes;
#   7. a damaged checkpoint: every rank refuses it, exit 1, one message.
#   8. --pack-documents with 2 ranks (not supported across ranks): exit 1, one clear message, nothing written.
#   9. --data token shards with 2 ranks (each reads only its chunks): losses and held-out losses as the
#      single process's; a token outside the vocabulary in the shard rank 1 checks: exit 1, one message
#      naming the file and the offset.
set -u
MPIEXEC=$1
PREFLAGS=$2
TOOL=$3
WORK=$4
TEXT=$5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# shellcheck disable=SC2086
mpi() { local np=$1; shift; timeout 120 "$MPIEXEC" -n "$np" $PREFLAGS "$TOOL" "$@"; }

# tiny model, 128 tokens: n = 64 per rank with 2 ranks; branch (128, 4) spans both ranks
COMMON=(--random-config tiny --segment-length 32,128 --dilated-ratio 1,4 --text "$TEXT" --seq-len 128 --batch 2
        --lr 3e-3 --warmup 1 --dtype double --seed 5)

losses() { sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' "$1"; }
same_losses() {  # file1 file2: every step's loss within 1e-9 relative
    paste <(losses "$1") <(losses "$2") | awk -v n="$(losses "$1" | wc -l)" '
        { d = $1 - $2; if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2; if (d > 1e-9 * s) bad = 1; c++ }
        END { exit (bad || c != n || c == 0) }'
}

# 1. single process vs 2 ranks vs 2 x 2
"$TOOL" "${COMMON[@]}" --steps 4 --out solo > solo.txt 2>&1 || fail "single process run: $(tail -3 solo.txt)"
mpi 2 "${COMMON[@]}" --steps 4 --save-every 2 --out two --save two.safetensors > two.txt 2>&1 || fail "2 ranks: $(tail -5 two.txt)"
same_losses solo/log.jsonl two/log.jsonl || fail "2 ranks: losses differ from the single process: $(losses solo/log.jsonl | tr '\n' ' ') vs $(losses two/log.jsonl | tr '\n' ' ')"
grep -q '"attention_bytes_sent":[1-9]' two/log.jsonl || fail "2 ranks: no attention traffic logged (the long branch should span both ranks)"
mpi 4 "${COMMON[@]}" --steps 4 --data-parallel 2 --out dp > dp.txt 2>&1 || fail "2 x 2 ranks: $(tail -5 dp.txt)"
same_losses solo/log.jsonl dp/log.jsonl || fail "2 x 2 ranks: losses differ from the single process"
# the gradient all-reduce in buckets of 2 KiB overlapping the backward (the default 25 MiB is one bucket
# for this model: the blocking path): the same losses, to the last digit printed
mpi 4 "${COMMON[@]}" --steps 4 --data-parallel 2 --bucket-bytes 2048 --out dpb > dpb.txt 2>&1 || fail "2 x 2 ranks, buckets: $(tail -5 dpb.txt)"
grep -q "bucket(s) overlapping the backward" dpb.txt || fail "2 x 2 ranks, buckets: no overlapping buckets reported: $(head -3 dpb.txt)"
[ "$(losses dp/log.jsonl)" = "$(losses dpb/log.jsonl)" ] || fail "2 x 2 ranks: losses with --bucket-bytes 2048 differ from the blocking all-reduce's"
"$TOOL" "${COMMON[@]}" --steps 1 --bucket-bytes -1 > badbucket.txt 2>&1
rc=$?
[ $rc = 2 ] && grep -q -- "--bucket-bytes: -1 is out of range" badbucket.txt || fail "--bucket-bytes -1: exit $rc, $(head -1 badbucket.txt)"

# 2. rank 0 alone prints and writes
[ "$(grep -c '^step ' two.txt)" = 4 ] || fail "2 ranks: expected 4 progress lines (rank 0 only), got $(grep -c '^step ' two.txt)"
[ "$(wc -l < two/log.jsonl)" = 4 ] || fail "2 ranks: log.jsonl should have 4 lines"
[ -s two/checkpoint.json ] && [ -s two/model.safetensors ] && [ -s two.safetensors ] || fail "2 ranks: checkpoint or --save file missing"
grep -q '"ranks": 2' two/checkpoint.json || fail "2 ranks: checkpoint.json does not record the ranks"

# 3. resume with the same ranks: bitwise the uninterrupted run
mpi 2 "${COMMON[@]}" --steps 2 --save-every 2 --out resumed > resumed1.txt 2>&1 || fail "resume part 1: $(tail -3 resumed1.txt)"
mpi 2 --resume resumed --steps 4 > resumed2.txt 2>&1 || fail "resume part 2: $(tail -3 resumed2.txt)"
cmp -s resumed/model.safetensors two/model.safetensors || fail "resumed run's model differs from the uninterrupted run's"
[ "$(wc -l < resumed/log.jsonl)" = 4 ] || fail "resumed log.jsonl should have 4 lines"

# 4. an agreed error: 130 tokens do not split into 2 chunks of whole segments
mpi 2 --random-config tiny --segment-length 32,128 --dilated-ratio 1,4 --text "$TEXT" --seq-len 130 --steps 1 > agreed.txt 2>&1
rc=$?
[ $rc = 1 ] || fail "agreed error: exit $rc, expected 1 ($(tail -3 agreed.txt))"
[ "$(grep -c 'longnet_train: .*\[rank 0 of 2\]' agreed.txt)" = 1 ] || fail "agreed error: expected one message naming the rank: $(cat agreed.txt)"

# 5. rank 0 alone fails (its --out cannot be created: a file is in the way); the others wait in a collective
echo x > blocker
mpi 2 "${COMMON[@]}" --steps 2 --out blocker/run > alone.txt 2>&1
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] || fail "failure on rank 0 alone: exit $rc (124: hang)"
grep -q "cannot create the folder" alone.txt || fail "failure on rank 0 alone: no clear message: $(head -5 alone.txt)"

# 6. a rank killed mid-run
# shellcheck disable=SC2086
timeout 120 "$MPIEXEC" -n 2 $PREFLAGS "$TOOL" "${COMMON[@]}" --steps 100000 --save-every 2 --out killed > killed.txt 2>&1 &
launcher=$!
for _ in $(seq 1 600); do [ -s killed/checkpoint.json ] && break; sleep 0.1; done
[ -s killed/checkpoint.json ] || fail "killed run: no checkpoint after 60 s"
runner=$(pgrep -P "$launcher" | head -1)                              # timeout -> mpirun -> ranks
victim=$( [ -n "$runner" ] && pgrep -P "$runner" | tail -1)
if [ -n "$victim" ]; then kill -9 "$victim"; else fail "killed run: no rank process found"; fi
wait "$launcher"
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] || fail "killed rank: mpirun exit $rc (0: not noticed, 124: hang)"
step=$(sed -n 's/.*"step": *\([0-9]*\).*/\1/p' killed/checkpoint.json | head -1)
mpi 2 --resume killed --steps $((step + 2)) > killed_resume.txt 2>&1 || fail "resume after a killed rank: $(tail -3 killed_resume.txt)"

# 7. a damaged checkpoint: every rank fails to load it, exit 1, one message
cp -r resumed damaged && for f in damaged/state-*.safetensors; do head -c 100 "$f" > "$f.cut" && mv "$f.cut" "$f"; done
mpi 2 --resume damaged --steps 6 > damaged.txt 2>&1
rc=$?
[ $rc = 1 ] || fail "damaged checkpoint: exit $rc, expected 1 ($(tail -3 damaged.txt))"
[ "$(grep -c '^longnet_train: .*\[rank 0 of 2\]' damaged.txt)" = 1 ] || fail "damaged checkpoint: expected one message: $(cat damaged.txt)"

# 8. packed documents are refused across ranks, before anything is written
mpi 2 "${COMMON[@]}" --steps 1 --pack-documents --eos-token 10 --out packed > packed.txt 2>&1
rc=$?
[ $rc = 1 ] || fail "--pack-documents on 2 ranks: exit $rc, expected 1 ($(tail -3 packed.txt))"
[ "$(grep -c '^longnet_train: --pack-documents is not supported across MPI ranks' packed.txt)" = 1 ] ||
    fail "--pack-documents on 2 ranks: expected one message: $(cat packed.txt)"
[ ! -e packed ] || fail "--pack-documents on 2 ranks: --out was created"

# 9. token shards (llm.c uint16, written here from the text's bytes): 2 ranks read their chunks only
shard() {  # shard OUT FIRST_BYTE COUNT: COUNT bytes of the text from FIRST_BYTE, one uint16 token each
    perl -e 'local $/; open(my $f, "<", $ARGV[0]) or die; binmode $f; my $t = substr(<$f>, $ARGV[1], $ARGV[2]);
             print pack("l<l<l<", 20240520, 1, length $t), "\0" x 1012, pack("v*", unpack("C*", $t))' "$TEXT" "$2" "$3" > "$1"
}
shard train_000000.bin 0 3000 && shard train_000001.bin 3000 2000 && shard val_000000.bin 5000 1000 ||
    fail "could not write the test shards"
DATA=(--random-config tiny --segment-length 32,128 --dilated-ratio 1,4 --heldout 'val_*.bin'
      --vocab 256 --seq-len 128 --batch 2 --lr 3e-3 --warmup 1 --dtype double --seed 5 --steps 3 --eval-every 1
      --eval-batches 3)
"$TOOL" "${DATA[@]}" --data 'train_*.bin' --out shard_solo > shard_solo.txt 2>&1 || fail "shards, single process: $(tail -3 shard_solo.txt)"
mpi 2 "${DATA[@]}" --data 'train_*.bin' --out shard_two > shard_two.txt 2>&1 || fail "shards, 2 ranks: $(tail -5 shard_two.txt)"
same_losses shard_solo/log.jsonl shard_two/log.jsonl || fail "shards, 2 ranks: losses differ from the single process"
heldout() { sed -n 's/.*"heldout_loss":\([-0-9.eE+]*\).*/\1/p' "$1"; }
[ "$(heldout shard_solo/log.jsonl | wc -l)" = 3 ] && paste <(heldout shard_solo/log.jsonl) <(heldout shard_two/log.jsonl) |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-9 * ($1 < 0 ? -$1 : $1)) bad = 1 } END { exit bad }' ||
    fail "shards, 2 ranks: held-out losses differ: $(heldout shard_solo/log.jsonl | tr '\n' ' ') vs $(heldout shard_two/log.jsonl | tr '\n' ' ')"
mkdir -p bad && cp train_000000.bin bad/ && cp train_000001.bin bad/ &&
    printf '\x2c\x01' | dd of=bad/train_000001.bin bs=1 seek=1034 conv=notrunc status=none ||
    fail "could not write the bad shard"                                     # token 300 at position 5
mpi 2 "${DATA[@]}" --data 'bad/train_*.bin' > shard_bad.txt 2>&1
rc=$?
[ $rc = 1 ] || fail "bad shard on 2 ranks: exit $rc, expected 1 ($(tail -3 shard_bad.txt))"
[ "$(grep -c '^longnet_train: token shard: bad/train_000001.bin: offset 1034: token 300 .*\[rank 1 of 2\]' shard_bad.txt)" = 1 ] ||
    fail "bad shard on 2 ranks: expected one message naming the file, the offset and rank 1: $(cat shard_bad.txt)"

if [ $failures = 0 ]; then echo "test_train_mpi_cli: all checks passed"; fi
exit $((failures > 0))
