#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Encode a batch of whole-slide images of different tile counts with one padded batch and a padding mask.

A slide encoder in computational pathology (Prov-GigaPath's is a torchscale LongNet encoder) turns the
tile embeddings of one slide, [N_tiles, D] with N_tiles different for every slide, into contextual tile
embeddings and a slide embedding. Here a small longnet_torch.LongNetEncoder (built from torchscale's
EncoderConfig fields: pre-LN with Sub-LN, non-causal dilated attention, no positions, final LayerNorm)
encodes a padded batch [B, N_max, D] with key_padding_mask [B, N_max] (True = pad, torchscale's
convention; left padding) or per-slide lengths [B] (right padding), on CPU, forward and backward. The
example then checks what the mask promises: every slide's tokens, its mean-pooled slide embedding and
the parameter gradients equal those of the slides encoded one at a time, and the pad rows are 0.

    PYTHONPATH=<build>/python python3 python/examples/encode_slides.py
    PYTHONPATH=<build>/python python3 python/examples/encode_slides.py --tiles 500,3000,17,1200 --left-pad

Prints one line per slide and exits with status 1 if a slide differs from its unbatched encoding.
"""

import argparse
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

import longnet_torch


class SlideEncoder(nn.Module):
    """Tile embeddings [B, N, D] (+ key_padding_mask or lengths) -> (tokens [B, N, D], slide embedding [B, D]):
    a LongNetEncoder (torchscale's EncoderConfig fields) and a mean over each slide's real tiles."""

    def __init__(self, dim, heads, layers, segment_lengths, dilated_ratios, dtype):
        super().__init__()
        config = {"encoder_embed_dim": dim, "encoder_attention_heads": heads, "encoder_ffn_embed_dim": 4 * dim,
                  "encoder_layers": layers, "segment_length": segment_lengths, "dilated_ratio": dilated_ratios}
        self.encoder = longnet_torch.LongNetEncoder.from_config(config, dtype=dtype)

    def forward(self, tiles, key_padding_mask=None, lengths=None):
        x = self.encoder(tiles, key_padding_mask=key_padding_mask, lengths=lengths)  # pad rows come out 0
        if key_padding_mask is None and lengths is None:
            return x, x.mean(dim=1)
        real = lengths if lengths is not None else x.shape[1] - key_padding_mask.sum(dim=1)  # tiles per slide
        return x, x.sum(dim=1) / real.clamp(min=1)[:, None].to(x.dtype)  # mean over the real tiles


def pad_batch(slides, left):
    """Stack [N_i, D] tensors into [B, N_max, D] with key_padding_mask [B, N_max] (True = pad) and the lengths."""
    n_max = max(s.shape[0] for s in slides)
    batch = torch.full((len(slides), n_max, slides[0].shape[1]), float("nan"), dtype=slides[0].dtype)
    mask = torch.ones(len(slides), n_max, dtype=torch.bool)
    for b, s in enumerate(slides):
        rows = slice(n_max - s.shape[0], n_max) if left else slice(0, s.shape[0])
        batch[b, rows] = s
        mask[b, rows] = False
    return batch, mask, torch.tensor([s.shape[0] for s in slides])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", default="37,260,1,120,75", help="tile count of each slide, comma-separated")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--segment-lengths", default="16,64,256")
    ap.add_argument("--dilated-ratios", default="1,2,4")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    ap.add_argument("--left-pad", action="store_true", help="pad on the left instead of the right")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tiles = [int(t) for t in args.tiles.split(",")]
    if not tiles or min(tiles) < 1:
        sys.exit(f"encode_slides: --tiles needs positive tile counts, got {args.tiles!r}")
    dtype = getattr(torch, args.dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.manual_seed(args.seed)
    model = SlideEncoder(args.dim, args.heads, args.layers, [int(s) for s in args.segment_lengths.split(",")],
                         [int(r) for r in args.dilated_ratios.split(",")], dtype)
    slides = [torch.randn(n, args.dim, dtype=dtype) for n in tiles]
    targets = [torch.randn(args.dim, dtype=dtype) for _ in tiles]  # a toy regression loss on the slide embedding

    # the batch: one padded tensor, one call (the pads hold NaN: the mask keeps them out)
    batch, mask, lengths = pad_batch(slides, args.left_pad)
    start = time.perf_counter()
    if args.left_pad:
        tokens, pooled = model(batch, key_padding_mask=mask)
    else:
        tokens, pooled = model(batch, lengths=lengths)  # right padding: the lengths say it all
    loss = sum(F.mse_loss(pooled[b], t, reduction="sum") for b, t in enumerate(targets))
    loss.backward()
    elapsed = time.perf_counter() - start
    batch_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    print(f"batch of {len(tiles)} slides, {sum(tiles)} tiles padded to {len(tiles)} x {batch.shape[1]} "
          f"({'left' if args.left_pad else 'right'} padding), {args.layers} layers, dim {args.dim}, {args.dtype}: "
          f"forward + backward {elapsed * 1e3:.1f} ms (torch threads: {torch.get_num_threads()})")

    # each slide alone, unpadded
    worst, ok = 0.0, True
    if not (torch.isfinite(tokens).all() and torch.all(tokens[mask] == 0)):
        print("pad rows of the encoded batch are not all 0")
        ok = False
    for b, (slide, target) in enumerate(zip(slides, targets)):
        alone_tokens, alone_pooled = model(slide[None])
        F.mse_loss(alone_pooled[0], target, reduction="sum").backward()
        real = ~mask[b]
        diff = max((tokens[b, real] - alone_tokens[0]).abs().max().item(),
                   (pooled[b] - alone_pooled[0]).abs().max().item())
        worst = max(worst, diff)
        ok = ok and diff <= tol
        print(f"slide {b}: {tiles[b]:5d} tiles, max |batched - alone| = {diff:.2e}")
    grad_diff = max((batch_grads[n] - p.grad).abs().max().item() / max(p.grad.abs().max().item(), 1e-300)
                    for n, p in model.named_parameters())
    print(f"parameter gradients: max relative |batched - sum of alone| = {grad_diff:.2e}")
    ok = ok and grad_diff <= tol * 10
    if not ok:
        print(f"MISMATCH: the padded batch does not equal the slides encoded alone (tolerance {tol:.0e})")
        return 1
    print(f"all {len(tiles)} slides match their unbatched encoding (max diff {worst:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
