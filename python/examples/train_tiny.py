#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Train a tiny LongNet language model in PyTorch whose attention is longnet_torch, on CPU.

Byte-level (vocabulary 256) next-token prediction on a text file (default: Debian's license texts in
/usr/share/common-licenses, ~180 KB), random windows of --seq-len bytes, AdamW, the last 10 % held out.
The model is longnet_torch.LongNetDecoder (torchscale's LongNetDecoder layout: XPos, Sub-LN, dilated
attention with branches (32, 1), (64, 2), (128, 4) by default): only the attention runs in longnet's
kernels, everything else is plain PyTorch.

    PYTHONPATH=<build>/python python3 python/examples/train_tiny.py --steps 300
"""

import argparse
import glob
import math
import os
import sys
import time

import torch

import longnet_torch


def read_corpus(path):
    if path:
        with open(path, "rb") as f:
            return f.read()
    files = sorted(f for f in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(f))
    if not files:
        sys.exit("train_tiny: no --text given and /usr/share/common-licenses is empty")
    return b"".join(open(f, "rb").read() for f in files)


def batches(data, seq_len, batch, generator):
    starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=generator)
    chunk = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()])
    return chunk[:, :-1], chunk[:, 1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", help="training text (bytes); default: /usr/share/common-licenses/*")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--segment-lengths", default="32,64,128")
    ap.add_argument("--dilated-ratios", default="1,2,4")
    ap.add_argument("--grad-mode", default="exact", choices=["exact", "stop_grad_weights"])
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0, help="torch/longnet threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    raw = read_corpus(args.text)
    data = torch.tensor(list(raw), dtype=torch.long)
    split = int(0.9 * len(data))
    train, heldout = data[:split], data[split:]
    if len(heldout) <= args.seq_len + 1:
        sys.exit(f"train_tiny: the text ({len(data)} bytes) is too short for --seq-len {args.seq_len}")

    segments = [int(x) for x in args.segment_lengths.split(",")]
    ratios = [int(x) for x in args.dilated_ratios.split(",")]
    model = longnet_torch.LongNetDecoder(vocab_size=256, embed_dim=64, num_heads=4, ffn_dim=128, num_layers=2,
                                         segment_lengths=segments, dilated_ratios=ratios,
                                         attention_options={"grad_mode": args.grad_mode, "offsets": "paper",
                                                            "tail": "exact"})
    torch.nn.init.normal_(model.embed_tokens.weight, std=64 ** -0.5)
    torch.nn.init.normal_(model.output_projection.weight, std=64 ** -0.5)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"train_tiny: {n_params} parameters, {len(train)} training bytes, seq {args.seq_len} x batch {args.batch}, "
          f"branches {list(zip(segments, ratios))}, grad_mode {args.grad_mode}, {torch.get_num_threads()} threads, "
          f"longnet kernels {longnet_torch.simd_isa()}", flush=True)

    gen = torch.Generator().manual_seed(args.seed)
    heldout_gen = torch.Generator().manual_seed(args.seed + 1)
    held_x, held_y = batches(heldout, args.seq_len, 16, heldout_gen)

    def heldout_loss():
        with torch.no_grad():
            logits = model(held_x)
            return torch.nn.functional.cross_entropy(logits.reshape(-1, 256), held_y.reshape(-1)).item()

    first_heldout = heldout_loss()
    print(f"step 0: held-out loss {first_heldout:.4f} nats/byte", flush=True)
    started = time.time()
    for step in range(1, args.steps + 1):
        x, y = batches(train, args.seq_len, args.batch, gen)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step}: loss {loss.item():.4f}  grad norm {norm.item():.3f}  "
                  f"lr {sched.get_last_lr()[0]:.2e}  {(time.time() - started) / step * 1000:.1f} ms/step", flush=True)
    last_heldout = heldout_loss()
    print(f"done: held-out loss {first_heldout:.4f} -> {last_heldout:.4f} nats/byte in {args.steps} steps, "
          f"{time.time() - started:.1f} s", flush=True)
    return 0 if last_heldout < first_heldout else 1


if __name__ == "__main__":
    sys.exit(main())
