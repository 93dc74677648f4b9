#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Passkey accuracy per length x depth from `longnet_lm passkey` trial lines (its stdout, JSONL).

    plot_passkey.py LABEL=trials.jsonl [LABEL=more.jsonl ...] out.svg [--title TEXT] [--chance P]

Each LABEL is one model (several files may share a label: their trials are pooled). Writes an SVG by
hand (no matplotlib needed): one panel per model, a grid of cells (rows: lengths, columns: depths),
each cell's shade and number its accuracy; the cell also gives correct/trials. Prints the markdown
table (one row per model and length, one column per depth, then all depths) to stdout.
"""

import json
import sys
from collections import OrderedDict


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def human(n):
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return "%d%s" % (n // size, unit)
    return str(n)


def shade(acc):  # white (0) to a dark green (1)
    lo, hi = (255, 255, 255), (27, 120, 55)
    c = [round(a + (b - a) * acc) for a, b in zip(lo, hi)]
    return "#%02x%02x%02x" % tuple(c)


def main(argv):
    title, chance = "Passkey retrieval", None
    args = []
    i = 0
    while i < len(argv):
        if argv[i] == "--title":
            title, i = argv[i + 1], i + 2
        elif argv[i] == "--chance":
            chance, i = float(argv[i + 1]), i + 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) < 2 or any("=" not in a for a in args[:-1]):
        sys.exit(__doc__)
    out = args[-1]
    models = OrderedDict()  # label -> {(length, depth): [correct, trials]}
    for spec in args[:-1]:
        label, path = spec.split("=", 1)
        cells = models.setdefault(label, {})
        for t in read(path):
            c = cells.setdefault((t["length"], t["depth"]), [0, 0])
            c[0] += 1 if t["correct"] else 0
            c[1] += 1

    lengths = sorted({l for cells in models.values() for l, _ in cells})
    depths = sorted({d for cells in models.values() for _, d in cells})

    # markdown table
    print("| model | length | " + " | ".join("depth %g" % d for d in depths) + " | all |")
    print("|---|--:|" + "--:|" * (len(depths) + 1))
    for label, cells in models.items():
        for l in lengths:
            row, ok, n = [], 0, 0
            for d in depths:
                c = cells.get((l, d))
                if c is None:
                    row.append("—")
                else:
                    row.append("%.2f" % (c[0] / c[1]))
                    ok, n = ok + c[0], n + c[1]
            if n:
                print("| %s | %s | %s | **%.2f** (%d/%d) |" % (label, human(l), " | ".join(row), ok / n, ok, n))

    # SVG: one panel per model
    cw, ch, left, top, gap = 74, 34, 70, 64, 40
    pw = left + cw * len(depths)
    width = 20 + len(models) * (pw + gap)
    height = top + ch * len(lengths) + 70
    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">' % (width, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>' % (20, title)]
    for k, (label, cells) in enumerate(models.items()):
        x0 = 20 + k * (pw + gap)
        s.append('<text x="%d" y="46" font-size="14" font-weight="bold">%s</text>' % (x0 + left, label))
        for j, d in enumerate(depths):
            s.append('<text x="%d" y="%d" text-anchor="middle" fill="#444">%g</text>' % (x0 + left + j * cw + cw / 2, top - 6, d))
        for i, l in enumerate(lengths):
            y = top + i * ch
            s.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (x0 + left - 8, y + ch / 2 + 5, human(l)))
            for j, d in enumerate(depths):
                x = x0 + left + j * cw
                c = cells.get((l, d))
                if c is None:
                    s.append('<rect x="%d" y="%d" width="%d" height="%d" fill="#eee" stroke="#999"/>' % (x, y, cw, ch))
                    s.append('<text x="%g" y="%g" text-anchor="middle" fill="#888">not run</text>' % (x + cw / 2, y + ch / 2 + 5))
                    continue
                acc = c[0] / c[1]
                s.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#999"/>' % (x, y, cw, ch, shade(acc)))
                s.append('<text x="%g" y="%g" text-anchor="middle" fill="%s">%.2f (%d/%d)</text>'
                         % (x + cw / 2, y + ch / 2 + 5, "white" if acc > 0.6 else "black", acc, c[0], c[1]))
        yb = top + ch * len(lengths)
        s.append('<text x="%g" y="%d" text-anchor="middle" fill="#444">depth of the key (0 = start, 1 = just before the question)</text>'
                 % (x0 + left + cw * len(depths) / 2, yb + 22))
        s.append('<text x="%d" y="%d" text-anchor="middle" fill="#444" transform="rotate(-90 %d %d)">length (bytes)</text>'
                 % (x0 + 12, top + ch * len(lengths) / 2, x0 + 12, top + ch * len(lengths) / 2))
    if chance is not None:
        s.append('<text x="20" y="%d" fill="#444">chance: %.2f</text>' % (height - 12, chance))
    s.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(s) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
