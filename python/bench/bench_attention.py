#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""longnet_torch against a plain PyTorch implementation of the same dilated attention, on CPU.

The paper configuration (w = 2048, 4096, 8192, 16384, 32768; r = 1, 2, 4, 6, 12) at N = 64K tokens,
H = 4 heads, D = 64 by default; forward and forward+backward, medians of --repeat runs, both in one
process on the same inputs and the same number of threads.

The baseline is written the way torchscale's DilatedAttention computes it (its code is not used): per
branch, view the sequence as segments of w rows, gather every r-th row of each segment for each head group
(offset h // ceil(H / r)), run matmul -> softmax -> matmul per segment (Debian's torch 1.13 has no
scaled_dot_product_attention; flash-attn needs a GPU), keep each row's log-sum-exp, scatter the rows
back, and merge the branches with weights softmax(lse) computed without gradient (torchscale's
autograd). longnet_torch runs the same function: offsets="torchscale", grad_mode="stop_grad_weights".

    PYTHONPATH=<build>/python python3 python/bench/bench_attention.py [--tokens 65536] [--threads 2]
"""

import argparse
import json
import math
import os
import platform
import statistics
import time

import torch

import longnet_torch

PAPER_SEGMENTS = [2048, 4096, 8192, 16384, 32768]
PAPER_RATIOS = [1, 2, 4, 6, 12]


def torch_dilated_attention(q, k, v, segments, ratios, causal=False):
    """Plain PyTorch dilated attention, torchscale's head groups; N must be a multiple of every min(w, N)."""
    B, N, H, D = q.shape
    scale = 1.0 / math.sqrt(D)
    branch_out, branch_lse = [], []
    for w, r in zip(segments, ratios):
        w = min(w, N)
        if N % w != 0:
            raise ValueError(f"the baseline needs N a multiple of every segment length, got N={N}, w={w}")
        S = N // w
        group = -(-H // r)  # heads per offset: ceil(H / r)
        qs, ks, vs = (t.reshape(B, S, w, H, D) for t in (q, k, v))
        out_b = q.new_zeros(B, S, w, H, D)
        lse_b = q.new_full((B, S, w, H), float("-inf"))
        for offset in range(r):
            heads = slice(offset * group, min((offset + 1) * group, H))
            if heads.start >= H:
                break
            # gather: rows offset, offset + r, ... of every segment, this head group -> [B, S, h, m, D]
            qg, kg, vg = (t[:, :, offset::r, heads].permute(0, 1, 3, 2, 4) for t in (qs, ks, vs))
            scores = torch.matmul(qg, kg.transpose(-1, -2)) * scale
            if causal:
                m = scores.shape[-1]
                mask = torch.ones(m, m, dtype=torch.bool).triu(1)
                scores = scores.masked_fill(mask, float("-inf"))
            lse = torch.logsumexp(scores, dim=-1)  # [B, S, h, m]
            probs = torch.softmax(scores, dim=-1)
            og = torch.matmul(probs, vg)  # [B, S, h, m, D]
            out_b[:, :, offset::r, heads] = og.permute(0, 1, 3, 2, 4)  # scatter back
            lse_b[:, :, offset::r, heads] = lse.permute(0, 1, 3, 2)
        branch_out.append(out_b.reshape(B, N, H, D))
        branch_lse.append(lse_b.reshape(B, N, H))
    with torch.no_grad():  # merge weights as constants, as torchscale computes them
        weights = torch.softmax(torch.stack(branch_lse), dim=0)
    return sum(o * wgt[..., None] for o, wgt in zip(branch_out, weights))


def longnet(q, k, v, segments, ratios, causal=False):
    return longnet_torch.dilated_attention(q, k, v, segments, ratios, causal=causal, offsets="torchscale",
                                           grad_mode="stop_grad_weights")


def median_seconds(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    B, N, H, D = args.batch, args.tokens, args.heads, args.dim
    segs, ratios = PAPER_SEGMENTS, PAPER_RATIOS
    q, k, v, dout = (torch.randn(B, N, H, D).to(dtype) for _ in range(4))
    flops = 0.0
    for w, r in zip(segs, ratios):  # SPEC §3: 4·D·N·min(w, N)/r² per head (half when causal)
        flops += 4.0 * D * N * min(w, N) / r ** 2
    flops *= B * H * (0.5 if args.causal else 1.0)

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {args.threads} threads, "
          f"longnet kernels {longnet_torch.simd_isa()}, load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"B={B} N={N} H={H} D={D} {args.dtype} causal={args.causal}, branches {list(zip(segs, ratios))}, "
          f"{flops / 1e9:.1f} GFLOP forward (SPEC §3 count), {args.repeat} runs each (median)", flush=True)

    # the same function: compare outputs and gradients once before timing
    with torch.no_grad():
        ref = torch_dilated_attention(q.float(), k.float(), v.float(), segs, ratios, args.causal)
        got = longnet(q, k, v, segs, ratios, args.causal).float()
    out_err = ((got - ref).abs().max() / ref.abs().max()).item()
    print(f"check: max |longnet - torch| / max |torch| = {out_err:.2e}", flush=True)
    del ref, got

    results = {}

    def forward(impl):
        with torch.no_grad():
            impl(q, k, v, segs, ratios, args.causal)

    def forward_backward(impl):
        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
        out = impl(qg, kg, vg, segs, ratios, args.causal)
        out.backward(dout)

    for name, impl in (("longnet_torch", longnet), ("pytorch", torch_dilated_attention)):
        for what, fn in (("forward", forward), ("forward+backward", forward_backward)):
            med, times = median_seconds(lambda: fn(impl), args.repeat)
            results[f"{name} {what}"] = {"median_s": med, "runs_s": times}
            gflops = flops * (1 if what == "forward" else 3.5) / med / 1e9
            print(f"{name:14s} {what:17s} median {med:8.3f} s  runs {', '.join(f'{t:.3f}' for t in times)}"
                  f"  ({gflops:.1f} GFLOP/s{'' if what == 'forward' else ', 3.5x forward flops'})", flush=True)
    for what in ("forward", "forward+backward"):
        speedup = results[f"pytorch {what}"]["median_s"] / results[f"longnet_torch {what}"]["median_s"]
        print(f"speed-up {what}: {speedup:.1f}x", flush=True)
        results[f"speedup {what}"] = speedup
    print(f"load average at the end {os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "args": vars(args), "check_rel_err": out_err, "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
