# SPDX-License-Identifier: Apache-2.0
"""longnet_torch.dilated_attention: LongNet's dilated attention on CPU tensors, with autograd."""

import math
import numbers

import torch

from . import _C

_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_OFFSETS = ("paper", "torchscale")
_TAILS = ("exact", "zero_pad")
_GRAD_MODES = ("exact", "stop_grad_weights")


def _int_list(value, name):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"longnet_torch: {name} must be a sequence of ints, got {type(value).__name__} {value!r}")
    items = list(value)
    out = []
    for i, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):
            if isinstance(x, torch.Tensor) and x.dim() == 0 and not x.is_floating_point() and x.dtype != torch.bool:
                x = int(x)
            else:
                raise TypeError(f"longnet_torch: {name}[{i}] must be an int, got {type(x).__name__} {x!r}")
        if x < 1:
            raise ValueError(f"longnet_torch: {name}[{i}] must be >= 1, got {int(x)}")
        out.append(int(x))
    return out


def _choice(value, name, allowed):
    if not isinstance(value, str):
        raise TypeError(f"longnet_torch: {name} must be a string, one of {', '.join(allowed)}; got {value!r}")
    if value not in allowed:
        raise ValueError(f"longnet_torch: unknown {name} {value!r} (expected one of {', '.join(allowed)})")
    return value


def _check_tensor(t, name, q):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"longnet_torch: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"longnet_torch: {name} is on device {t.device}; longnet_torch runs on CPU tensors only "
                         f"(move it with .cpu())")
    if t.layout != torch.strided:
        raise ValueError(f"longnet_torch: {name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"longnet_torch: {name} has dtype {t.dtype}; supported: float32, float64, bfloat16, float16")
    if t.dim() != 4:
        raise ValueError(f"longnet_torch: {name} must have 4 dims [B, N, H, D], got shape {list(t.shape)}")
    if q is not None:
        if t.dtype != q.dtype:
            raise TypeError(f"longnet_torch: {name} has dtype {t.dtype} but q has dtype {q.dtype}; "
                            f"q, k and v need one dtype")
        if t.shape != q.shape:
            raise ValueError(f"longnet_torch: {name} has shape {list(t.shape)} but q has shape {list(q.shape)} "
                             f"(q, k, v are all [B, N, H, D])")


def dilated_attention(q, k, v, segment_lengths, dilated_ratios, causal=False, offsets="paper", tail="exact",
                      scale=None, grad_mode="exact", return_lse=False):
    """LongNet dilated attention of q, k, v [B, N, H, D] (CPU; float32, float64, bfloat16 or float16).

    Branch i cuts the sequence into segments of ``segment_lengths[i]`` rows and keeps every
    ``dilated_ratios[i]``-th row of each (the head's offset inside the segment decides which); the kept rows
    attend densely among themselves, and the branches merge through their log-sum-exps (one softmax over
    the union of the keys each branch shows a row). A row no branch keeps gets 0 (and lse -inf).

    Args:
        q, k, v: tensors [B, N, H, D] of one dtype. Any strides: views (e.g. ``x.transpose(1, 2)`` of a
            [B, H, N, D] buffer) are read in place; only a head dim with stride != 1 is copied.
        segment_lengths, dilated_ratios: equally long sequences of ints >= 1.
        causal: a kept query attends to the kept keys at positions <= its own.
        offsets: "paper" (head h uses offset h mod r) or "torchscale" (h // ceil(H / r), torchscale's head
            groups).
        tail: "exact" (rows past N do not exist) or "zero_pad" (torchscale's zero-padded tails: padding
            rows a head keeps act as keys with logit 0 and value 0; non-causal only).
        scale: softmax scale, default 1/sqrt(D).
        grad_mode: "exact" (the true gradient) or "stop_grad_weights" (the branch-merge weights are held
            constant in the backward, as torchscale's autograd does).
        return_lse: also return the merged log-sum-exp [B, N, H] (float32; float64 for float64 inputs),
            differentiable too.

    Returns:
        out [B, N, H, D] (contiguous, the inputs' dtype), or (out, lse) when return_lse.

    Raises:
        TypeError: a non-tensor input, an unsupported or mixed dtype, options of the wrong type.
        ValueError: a non-CPU tensor, a wrong shape, an empty branch list, a length or ratio < 1, counts
            that differ, an unknown offsets / tail / grad_mode, a non-finite scale.
    """
    _check_tensor(q, "q", None)
    _check_tensor(k, "k", q)
    _check_tensor(v, "v", q)
    segments = _int_list(segment_lengths, "segment_lengths")
    dilations = _int_list(dilated_ratios, "dilated_ratios")
    if not segments:
        raise ValueError("longnet_torch: segment_lengths is empty; dilated attention needs at least one branch")
    if len(segments) != len(dilations):
        raise ValueError(f"longnet_torch: {len(segments)} segment_lengths but {len(dilations)} dilated_ratios; "
                         f"the counts must be equal")
    if not isinstance(causal, (bool, torch.Tensor)) and not isinstance(causal, numbers.Integral):
        raise TypeError(f"longnet_torch: causal must be a bool, got {type(causal).__name__} {causal!r}")
    _choice(offsets, "offsets", _OFFSETS)
    _choice(tail, "tail", _TAILS)
    _choice(grad_mode, "grad_mode", _GRAD_MODES)
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(f"longnet_torch: scale must be a float or None, got {type(scale).__name__} {scale!r}")
        scale = float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"longnet_torch: scale must be a finite number, got {scale}")
    out, lse = _C.dilated_attention(q, k, v, segments, dilations, bool(causal), offsets, tail, scale, grad_mode)
    return (out, lse) if return_lse else out
