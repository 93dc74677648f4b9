# SPDX-License-Identifier: Apache-2.0
"""python/examples/train_tiny.py runs and learns: 40 steps on a generated text lower the held-out loss."""

import os
import re
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "train_tiny.py")


def test_train_tiny_learns(tmp_path):
    # a text with structure to learn: random words from a small vocabulary (seeded, not zeros)
    import random
    rng = random.Random(3)
    words = ["dilated", "attention", "segment", "branch", "longnet", "token", "merge", "softmax"]
    text = " ".join(rng.choice(words) for _ in range(6000)).encode()
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(text)
    run = subprocess.run([sys.executable, EXAMPLE, "--text", str(corpus), "--steps", "40", "--seq-len", "128",
                          "--batch", "4", "--log-every", "20"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    m = re.search(r"held-out loss ([0-9.]+) -> ([0-9.]+) nats/byte", run.stdout)
    assert m, run.stdout
    first, last = float(m.group(1)), float(m.group(2))
    assert last < first - 1.0, run.stdout
