#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A corpus larger than this machine's RAM, as llm.c token shards, trained on with longnet_train --data
# (issue 24): prints the corpus size, the machine's memory and longnet_train's peak RSS (GNU time).
# Not run in CI (it writes RAM x 1.25 bytes of shards; takes minutes). Usage:
#   scripts/bench_big_corpus.sh BUILD_DIR WORK_DIR [STEPS]
set -euo pipefail
build=${1:?build dir}; work=${2:?work dir}; steps=${3:-20}
mem_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
bytes=$((mem_kb * 1024 * 5 / 4))
need_kb=$((bytes / 1024 + 1048576))
avail_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
if (( avail_kb < need_kb )); then
  echo "bench_big_corpus: $work has $((avail_kb / 1048576)) GiB free, needs $((need_kb / 1048576)) GiB" >&2
  exit 1
fi
mkdir -p "$work"
echo "RAM $((mem_kb / 1048576)) GiB, corpus $((bytes / 1073741824)) GiB of uint16 tokens"
# random bytes as uint16 tokens (values < 65536; the model's vocabulary is 65536), shards of 1G tokens
head -c "$bytes" /dev/urandom | python3 -c '
import struct, sys
out, shard, i = sys.argv[1], 1 << 30, 0
while True:
    data = sys.stdin.buffer.read(2 * shard)
    if len(data) < 2:
        break
    n = len(data) // 2
    with open("%s_%06d.bin" % (out, i), "wb") as f:
        f.write(struct.pack("<3i", 20240520, 1, n) + bytes(1012) + data[:2 * n])
    i += 1
' "$work/train"
/usr/bin/time -v "$build/examples/longnet_train" --random-config tiny --vocab 65536 --data "$work/train_*.bin" \
  --seq-len 4096 --batch 2 --steps "$steps" 2>&1 | grep -E "step|Maximum resident|Elapsed"
