#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""One training step of the LongNet base model on one 1B-token sequence with distributed_trainer
(sequence parallelism over P ranks, activation checkpointing), estimated from measured numbers
(docs/distributed.md, bench/bench_distributed_training.sh): the per-core compute rate of a measured
training step and the per-rank traffic formula that the trainer's measured bytes match exactly.

  bench/distributed_training_1b_estimate.py --measured-compute-seconds 1.70 --measured-tokens-per-rank 4096

The measured run: --random-config small (D = 256, 4 heads, FFN 1024, 4 layers, vocab 256), segments
1024,4096,8192,16384,32768 / dilations 1,4,8,16,32, one rank (its N = 4096), float, one thread.
Target: the base model (D = 768, 12 heads, FFN 3072, 12 layers, vocab 32000), float, the paper's
branches plus w = 65536 .. N with r = w / 2048, causal, activation checkpointing.

Traffic per rank and layer, long branch (w' = min(w, N) > n spans g = w'/n ranks, c = n/r selected rows
per head on each rank; H heads of hd values, 4-byte floats):
  forward K, V rows: 2·(g−1)·c·H·hd·4; the checkpointed recompute: the same again;
  backward K, V, Q, dO rows plus L and Δ: (4·hd + 2)·(g−1)·c·H·4.
Gradient all-reduce (ring): 2·(P−1)/P · parameters · 4 bytes.
"""
import argparse

PAPER = [(2048, 1), (4096, 2), (8192, 4), (16384, 6), (32768, 12)]


def extended(top):
    out = list(PAPER)
    w = 65536
    while w <= top:
        out.append((w, w // 2048))
        w *= 2
    return out


def params(D, F, L, V):
    per_layer = 4 * (D * D + D) + 2 * D + 4 * D + (F * D + F) + (D * F + D) + 2 * F
    return 2 * V * D + L * per_layer + 2 * D


def flops_per_token(D, H, F, L, V, brs, N, recompute):
    """Training FLOPs per token: 6 per weight of every matmul (forward 2, backward 4), plus the causal
    dilated attention (forward 2·hd·Σ w'/r² per head, backward ≈ 2× forward); the checkpointed recompute
    adds another forward of the layers."""
    hd = D // H
    dense_layer = 2 * (4 * D * D + 2 * D * F)  # forward flops per token of one layer's matmuls
    attn_fwd = H * 2 * hd * sum(min(w, N) / (r * r) for w, r in brs)  # causal: half of 4·hd·w'/r²
    layer_fwd = dense_layer + attn_fwd
    total = L * 3 * layer_fwd + 6 * V * D  # output projection: forward + backward
    if recompute:
        total += L * layer_fwd
    return total


def attention_traffic(D, H, L, brs, N, n, recompute, world=False):
    hd = D // H
    P = N // n
    total = 0.0
    for w, r in brs:
        w = min(w, N)
        if w <= n:
            continue
        g = P if world else w // n
        c = n // r
        if world:  # torchscale: all-gather K, V over every rank; backward reduce-scatters dK, dV
            total += 2 * (2 * (g - 1) * c * H * hd * 4)
        else:
            fwd = 2 * (g - 1) * c * H * hd * 4
            total += fwd * (2 if recompute else 1) + (4 * hd + 2) * (g - 1) * c * H * 4
    return L * total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--measured-compute-seconds", type=float, required=True, help="one training step, one rank")
    ap.add_argument("--measured-tokens-per-rank", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=1 << 30)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--gbit", type=float, default=100.0, help="network bandwidth per rank, Gb/s")
    ap.add_argument("--cores-per-rank", type=int, default=64)
    a = ap.parse_args()

    # the measured run (small model, its own branches, one rank: no communication)
    m_brs = [(1024, 1), (4096, 4), (8192, 8), (16384, 16), (32768, 32)]
    n0 = a.measured_tokens_per_rank
    m_flops = flops_per_token(256, 4, 1024, 4, 256, m_brs, n0, False) * n0
    rate = m_flops / a.measured_compute_seconds
    print(f"measured: {m_flops:.3e} flop per step in {a.measured_compute_seconds} s = {rate / 1e9:.1f} GFLOP/s per core")
    # the formula against the measured bytes of bench_distributed_training.sh (2 ranks: 22.13 MB)
    print(f"formula check, small model 2 x {n0}: {attention_traffic(256, 4, 4, m_brs, 2 * n0, n0, False) / 1e6:.2f} MB "
          f"per rank (measured 22.13 MB), whole-world all-gather {attention_traffic(256, 4, 4, m_brs, 2 * n0, n0, False, True) / 1e6:.2f} MB")

    D, H, F, L, V, N = 768, 12, 3072, 12, a.vocab, a.tokens
    brs = extended(N)
    p = params(D, F, L, V)
    fpt = flops_per_token(D, H, F, L, V, brs, N, True)
    bw = a.gbit * 1e9 / 8
    print(f"base model: {p / 1e6:.0f} M parameters, {len(brs)} branches, {fpt / 1e6:.0f} MFLOP per token per training "
          f"step (with the checkpointed recompute), float, N = {N:,}")
    print()
    print(f"| tokens/rank n | ranks P | memory/rank | compute/rank, 1 core | compute/rank, {a.cores_per_rank} cores* | "
          f"attention traffic/rank | whole-world all-gather/rank | gradient all-reduce/rank | communication at {a.gbit:g} Gb/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (1 << 16, 1 << 17, 1 << 18):
        P = N // n
        # checkpointing: every layer's input, one layer's activations (q, k, v, a, a_ln, two LN outputs,
        # mid, input: ~9·D, FFN pre-GELU and its LN output: 2·F), the gradient of the stream and scratch
        # (~4·D), logits of one 1024-row block; parameters, gradients, two Adam moments.
        act = n * 4 * (L * D + 9 * D + 2 * F + 4 * D) + 1024 * V * 4
        state = 4 * p * 4
        mem = act + state
        comp = fpt * n / rate
        t = attention_traffic(D, H, L, brs, N, n, True)
        tw = attention_traffic(D, H, L, brs, N, n, True, world=True)
        g = 2 * (P - 1) / P * p * 4
        print(f"| {n >> 10}K | {P:,} | {mem / 2**30:.1f} GiB | {comp:.0f} s | {comp / a.cores_per_rank:.1f} s | "
              f"{t / 1e6:.0f} MB | {tw / 1e9:.1f} GB | {g / 1e9:.2f} GB | {(t + g) / bw:.2f} s |")


if __name__ == "__main__":
    main()
