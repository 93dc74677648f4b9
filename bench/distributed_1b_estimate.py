#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What one LongNet attention layer over 1B tokens needs with longnet::distributed, computed from
measured numbers (docs/distributed.md): the per-core throughput of a measured run and the per-rank
traffic formula that comm_stats reproduces byte for byte (tests/mpi, bench/bench_distributed.sh).

  bench/distributed_1b_estimate.py --measured-cpu-seconds 86.9 --measured-tokens-per-rank 4194304 \
      --measured-tokens 16777216 --measured-heads 1

Model: the paper's branches plus w = 65536 .. N with r = w / 2048 ("paper-extended" of the example),
H = 12, D = 64 (the base model), bfloat16 storage, forward pass of one attention layer.
"""
import argparse

PAPER = [(2048, 1), (4096, 2), (8192, 4), (16384, 6), (32768, 12)]


def branches(top):
    out = list(PAPER)
    w = 65536
    while w <= top:
        out.append((w, w // 2048))
        w *= 2
    return out


def flops_per_token_head(brs, N, D):  # SPEC §3: 4·D·min(w, N)/r² (non-causal)
    return sum(4.0 * D * min(w, N) / (r * r) for w, r in brs)


def traffic_per_rank(brs, N, n, H, D, elem, world=False):  # forward: K and V rows of the long branches
    P = N // n
    total = 0.0
    for w, r in brs:
        w = min(w, N)
        if w <= n:
            continue
        g = P if world else w // n
        total += 2.0 * (g - 1) * (n // r) * H * D * elem
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--measured-cpu-seconds", type=float, required=True)
    ap.add_argument("--measured-tokens-per-rank", type=int, required=True)
    ap.add_argument("--measured-tokens", type=int, required=True)
    ap.add_argument("--measured-heads", type=int, default=1)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=1 << 30)
    ap.add_argument("--gbit", type=float, default=100.0, help="network bandwidth per rank, Gb/s")
    ap.add_argument("--cores-per-rank", type=int, default=64)
    a = ap.parse_args()

    D, H, N = a.dim, a.heads, a.tokens
    measured_flops = (flops_per_token_head(branches(a.measured_tokens), a.measured_tokens, D) *
                      a.measured_tokens_per_rank * a.measured_heads)
    rate = measured_flops / a.measured_cpu_seconds
    print(f"measured: {measured_flops:.3e} flop in {a.measured_cpu_seconds} CPU s = {rate / 1e9:.1f} GFLOP/s per core")
    brs = branches(N)
    fpt = flops_per_token_head(brs, N, D)
    print(f"1B model: {len(brs)} branches, {fpt / 1e6:.3f} MFLOP per token per head (non-causal), H = {H}, D = {D}, bf16")
    bw = a.gbit * 1e9 / 8
    print()
    print(f"| tokens/rank n | ranks P | memory/rank (q, k, v, out, lse) | compute/rank, 1 core | compute/rank, "
          f"{a.cores_per_rank} cores | traffic/rank | at {a.gbit:g} Gb/s | whole-world all-gather/rank | at {a.gbit:g} Gb/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (1 << 20, 1 << 22, 1 << 24):
        P = N // n
        mem = 4 * n * H * D * 2 + n * H * 4 + 4 * 2048 * H * D * 2  # + gathered K/V of one long branch
        comp = fpt * n * H / rate
        t = traffic_per_rank(brs, N, n, H, D, 2)
        tw = traffic_per_rank(brs, N, n, H, D, 2, world=True)
        print(f"| {n >> 20}M | {P} | {mem / 2**30:.1f} GiB | {comp:.0f} s | {comp / a.cores_per_rank:.1f} s | "
              f"{t / 1e6:.1f} MB | {t / bw * 1e3:.1f} ms | {tw / 1e6:.0f} MB | {tw / bw * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
