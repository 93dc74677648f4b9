#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Plot longnet_train runs (their DIR/log.jsonl) against steps.

    plot_training.py LABEL=run_dir/log.jsonl [LABEL=other/log.jsonl ...] out.png [--title TEXT]
                     [--chance-loss NATS] [--chance-accuracy P]

Left panel: training loss per step (thin) and held-out loss where evaluated (markers); right panel:
held-out accuracy (next-token argmax; for --task recall, the answer token). Prints a markdown table of
the evaluated points to stdout. --chance-loss / --chance-accuracy draw a dashed "chance" line (e.g.
log 16 and 1/16 for a uniform guess among 16 values). Needs matplotlib (Debian: python3-matplotlib).
"""

import json
import sys


def read(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def main(argv):
    def option(name):
        nonlocal argv
        if name not in argv:
            return None
        i = argv.index(name)
        if i + 1 >= len(argv):
            print(f"{name} needs a value", file=sys.stderr)
            sys.exit(2)
        value = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
        return value

    title = option("--title")
    chance_loss = option("--chance-loss")
    chance_accuracy = option("--chance-accuracy")
    runs = [a for a in argv[1:] if "=" in a]
    outs = [a for a in argv[1:] if a.endswith(".png")]
    if not runs or len(outs) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    data = []
    for r in runs:
        label, path = r.split("=", 1)
        data.append((label, read(path)))

    print("| run | step | training loss | held-out loss | held-out accuracy |")
    print("|---|---|---|---|---|")
    for label, rows in data:
        for row in rows:
            if "heldout_loss" in row:
                print(f"| {label} | {row['step']} | {row['loss']:.4f} | {row['heldout_loss']:.4f} | "
                      f"{row['heldout_accuracy']:.3f} |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (label, rows) in enumerate(data):
        color = f"C{i}"
        ax_loss.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=color, alpha=0.35, lw=0.8)
        ev = [r for r in rows if "heldout_loss" in r]
        ax_loss.plot([r["step"] for r in ev], [r["heldout_loss"] for r in ev], "o-", color=color, label=f"{label} (held-out)")
        ax_acc.plot([r["step"] for r in ev], [r["heldout_accuracy"] for r in ev], "o-", color=color, label=label)
    if chance_loss is not None:
        ax_loss.axhline(float(chance_loss), color="grey", ls="--", lw=1, label="chance")
    if chance_accuracy is not None:
        ax_acc.axhline(float(chance_accuracy), color="grey", ls="--", lw=1, label="chance")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (nats; thin: training, per step)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("held-out accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(outs[0], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
