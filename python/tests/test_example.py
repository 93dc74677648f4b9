# SPDX-License-Identifier: Apache-2.0
"""The examples run: python/examples/train_tiny.py learns (40 steps on a generated text lower the held-out
loss); python/examples/encode_slides.py encodes a padded batch of slides as each slide alone."""

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


SLIDES = os.path.join(os.path.dirname(__file__), "..", "examples", "encode_slides.py")


def test_encode_slides_batch_equals_each_slide_alone():
    """python/examples/encode_slides.py: a left-padded float64 batch of slides (1 to 260 tiles) encoded with
    a key_padding_mask equals every slide encoded alone (tokens, slide embedding, parameter gradients; right
    padding and float32 are tested on the module in test_module.py)."""
    run = subprocess.run([sys.executable, SLIDES, "--tiles", "37,260,1,120,75", "--left-pad"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(re.findall(r"^slide \d: ", run.stdout, re.M)) == 5, run.stdout
    assert "all 5 slides match their unbatched encoding" in run.stdout, run.stdout
