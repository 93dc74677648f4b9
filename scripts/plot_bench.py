#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Plot and tabulate a longnet_bench JSON file (Google Benchmark --benchmark_out_format=json).

    plot_bench.py <bench.json> [more.json ...] [docs/bench.png]

Prints markdown to stdout: the machine and measured FMA peak, one results table (N, time, GFLOP/s,
efficiency, tokens/s per benchmark), the "ours ÷ oneDNN" dense-attention ratio and the per-token time
of dilated attention across N (flat = linear scaling). With a second argument, also writes a log-log
plot of time vs N: dense vs dilated, one line per (op, storage, causal, heads).

Where a benchmark has aggregates (repetitions), the median is used; single runs are used as they are
(several plain runs of one benchmark are reduced to their median here). With several JSON files, a
benchmark present in more than one is reduced to the median of its per-file values (e.g. alternating
runs of two benchmarks on a busy machine); the machine table shows the first file's context.
"""

import json
import re
import statistics
import sys
from collections import OrderedDict

TIME_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
NAME_RE = re.compile(r"^BM_(?P<op>[A-Za-z]+)/(?P<type>[a-z0-9]+)/(?P<causal>causal|noncausal)/H:(?P<heads>\d+)"
                     r"(?:/mode:(?P<mode>[a-z]+))?/N:(?P<seq>\d+)")
SHORT_OP = {"DenseAttention": "dense", "DilatedAttention": "dilated", "OneDNNDenseAttention": "oneDNN dense",
            "DilatedBackward": "dilated backward"}


def load_runs(paths):
    """Returns (context of the first file, startup peaks, peak from BM_FmaPeak or None, result dicts)."""
    grouped = OrderedDict()  # run_name -> {"medians": [entries], "runs": [entries]}
    context, startup_peaks = None, []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        if context is None:
            context = data.get("context", {})
        if "longnet_peak_gflops" in data.get("context", {}):
            startup_peaks.append(float(data["context"]["longnet_peak_gflops"]))
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                print(f"warning: {b['name']} failed: {b.get('error_message', '')}", file=sys.stderr)
                continue
            run_name = b.get("run_name", b["name"])
            slot = grouped.setdefault(run_name, {"medians": [], "runs": []})
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    slot["medians"].append(b)
            else:
                slot["runs"].append(b)

    peak_run = None
    results = []
    for run_name, slot in grouped.items():
        entries = slot["medians"] or slot["runs"]
        if not entries:
            continue  # only BigO / RMS / mean / stddev: nothing to report

        def median_of(key):
            values = [e[key] for e in entries if key in e]
            return statistics.median(values) if values else None

        time_ms = statistics.median(e["real_time"] * TIME_TO_MS[e.get("time_unit", "ns")] for e in entries)
        if run_name.startswith("BM_FmaPeak"):
            peak_run = median_of("peak_gflops")
            continue
        m = NAME_RE.match(run_name)
        if not m:
            continue
        results.append({
            "op": m["op"], "type": m["type"], "causal": m["causal"] == "causal", "heads": int(m["heads"]),
            "mode": m["mode"], "seq": int(m["seq"]), "time_ms": time_ms,
            "gflops": median_of("gflops"), "efficiency": median_of("efficiency"),
            "tokens_per_s": median_of("tokens_per_s"), "peak_gflops": median_of("peak_gflops"),
            "samples": sum(e.get("repetitions", 1) for e in slot["medians"]) if slot["medians"] else len(entries),
        })
    return context or {}, startup_peaks, peak_run, results


def series_key(r):
    return (r["op"], r["type"], r["causal"], r["heads"], r["mode"])


def series_label(key):
    op, type_, causal, heads, mode = key
    label = f"{SHORT_OP.get(op, op)} {type_} {'causal' if causal else 'non-causal'} H={heads}"
    return label + (f" ({mode})" if mode else "")


def fmt_seq(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return str(n)


def fmt_time(ms):
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def print_tables(context, startup_peaks, peak_run, results):
    print("| machine | value |")
    print("|---|---|")
    print(f"| CPUs (Google Benchmark) | {context.get('num_cpus', '?')} × {context.get('mhz_per_cpu', '?')} MHz |")
    print(f"| threads | {context.get('longnet_threads', '?')} |")
    print(f"| FMA ISA | {context.get('longnet_fma_isa', '?')} |")
    peaks = ", ".join(f"{p:.1f}" for p in startup_peaks) or "?"
    print(f"| FMA peak at startup (efficiency denominator; one per file) | {peaks} GFLOP/s |")
    if peak_run is not None:
        print(f"| BM_FmaPeak in the run (median) | {peak_run:.1f} GFLOP/s |")
    print(f"| load average at start | {', '.join(f'{x:.2f}' for x in context.get('load_avg', []))} |")
    print(f"| date | {context.get('date', '?')} |")
    print()

    print("| benchmark | N | time (ms) | GFLOP/s | efficiency | tokens/s | runs |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    type_order = {"float": 0, "bf16": 1}
    for r in sorted(results, key=lambda r: (r["op"] != "DenseAttention", r["op"], type_order.get(r["type"], 9),
                                            r["causal"], -r["heads"], r["mode"] or "", r["seq"])):
        eff = f"{100 * r['efficiency']:.1f} %" if r["efficiency"] is not None else "–"
        print(f"| {series_label(series_key(r))} | {fmt_seq(r['seq'])} | {fmt_time(r['time_ms'])} | "
              f"{r['gflops']:.1f} | {eff} | {r['tokens_per_s']:,.0f} | {r['samples']} |")
    print()

    # ours ÷ oneDNN: same op (dense, non-causal, float, H, N), best oneDNN threading mode
    onednn = [r for r in results if r["op"] == "OneDNNDenseAttention"]
    if onednn:
        print("| dense attention, float, non-causal | N | H | ours (ms) | oneDNN best (ms) | ours ÷ oneDNN (speed) |")
        print("|---|--:|--:|--:|--:|--:|")
        for seq, heads in sorted({(r["seq"], r["heads"]) for r in onednn}):
            best = min((r for r in onednn if r["seq"] == seq and r["heads"] == heads), key=lambda r: r["time_ms"])
            ours = [r for r in results if r["op"] == "DenseAttention" and r["type"] == "float" and not r["causal"]
                    and r["seq"] == seq and r["heads"] == heads]
            if ours:
                o = ours[0]
                print(f"| longnet vs oneDNN ({best['mode']}) | {fmt_seq(seq)} | {heads} | {fmt_time(o['time_ms'])} | "
                      f"{fmt_time(best['time_ms'])} | {best['time_ms'] / o['time_ms']:.2f}× |")
        print()

    # linear scaling of dilated attention: time per token relative to the smallest N of the series
    dilated = OrderedDict()
    for r in sorted(results, key=lambda r: r["seq"]):
        if r["op"] == "DilatedAttention":
            dilated.setdefault(series_key(r), []).append(r)
    if dilated:
        print("| dilated series | N range | ns per token (first → last) | last ÷ first |")
        print("|---|---|--:|--:|")
        for key, rs in dilated.items():
            if len(rs) < 2:
                continue
            first, last = rs[0], rs[-1]
            per_first = first["time_ms"] * 1e6 / first["seq"]
            per_last = last["time_ms"] * 1e6 / last["seq"]
            print(f"| {series_label(key)} | {fmt_seq(first['seq'])}–{fmt_seq(last['seq'])} | "
                  f"{per_first:.0f} → {per_last:.0f} | {per_last / per_first:.2f} |")
        print()


def plot(results, out_path, context, startup_peaks):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("warning: matplotlib is not installed (Debian: apt-get install python3-matplotlib); no plot written",
              file=sys.stderr)
        return False
    series = OrderedDict()
    for r in sorted(results, key=lambda r: r["seq"]):
        series.setdefault(series_key(r), []).append(r)
    colors = {("float", False): "tab:blue", ("float", True): "tab:cyan",
              ("bf16", False): "tab:red", ("bf16", True): "tab:orange"}
    fig, ax = plt.subplots(figsize=(9, 6))
    for key, rs in series.items():
        op, type_, causal, heads, mode = key
        xs = [r["seq"] for r in rs]
        ys = [r["time_ms"] for r in rs]
        color = colors.get((type_, causal), "tab:gray")
        if op == "DenseAttention":
            style = dict(linestyle="-", marker="o")
        elif op == "DilatedAttention":
            style = dict(linestyle="--" if heads != 1 else ":", marker="s" if heads != 1 else "^")
        elif op == "DilatedBackward":  # backward time only (manual time), one size per series
            style = dict(linestyle="-.", marker="x", markersize=9)
        else:
            style = dict(linestyle="none", marker="*", markersize=12)
            color = "black" if mode == "blocks" else "dimgray"
        ax.plot(xs, ys, color=color, label=series_label(key), **style)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: fmt_seq(int(round(x)))))
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N (tokens)")
    ax.set_ylabel("forward time (ms, median)")
    title = "longnet forward: dense (N²) vs dilated attention, paper branches (N), D = 64"
    if startup_peaks:
        lo, hi = min(startup_peaks), max(startup_peaks)
        peak_text = f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}"
        title += f"\n{context.get('longnet_threads', '?')} threads, measured FMA peak {peak_text} GFLOP/s"
        if context.get("load_avg"):
            title += f", load average at start {context['load_avg'][0]:.1f}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    print(f"wrote {out_path}", file=sys.stderr)
    return True


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    inputs = [a for a in argv[1:] if not a.endswith(".png")]
    outputs = [a for a in argv[1:] if a.endswith(".png")]
    context, startup_peaks, peak_run, results = load_runs(inputs)
    if not results:
        print(f"error: no attention benchmarks in {' '.join(inputs)}", file=sys.stderr)
        return 1
    print_tables(context, startup_peaks, peak_run, results)
    for out in outputs:
        plot(results, out, context, startup_peaks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
