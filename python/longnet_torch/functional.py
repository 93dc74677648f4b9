# SPDX-License-Identifier: Apache-2.0
"""longnet_torch.dilated_attention (padded batches with key_padding_mask too) and
longnet_torch.dilated_attention_varlen (packed sequences with cu_seqlens): LongNet's dilated attention on
CPU tensors, with autograd."""

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


def _check_tensor(t, name, q, dims=4, layout="[B, N, H, D]"):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"longnet_torch: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"longnet_torch: {name} is on device {t.device}; longnet_torch runs on CPU tensors only "
                         f"(move it with .cpu())")
    if t.layout != torch.strided:
        raise ValueError(f"longnet_torch: {name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"longnet_torch: {name} has dtype {t.dtype}; supported: float32, float64, bfloat16, float16")
    if t.dim() != dims:
        raise ValueError(f"longnet_torch: {name} must have {dims} dims {layout}, got shape {list(t.shape)}")
    if q is not None:
        if t.dtype != q.dtype:
            raise TypeError(f"longnet_torch: {name} has dtype {t.dtype} but q has dtype {q.dtype}; "
                            f"q, k and v need one dtype")
        if t.shape != q.shape:
            raise ValueError(f"longnet_torch: {name} has shape {list(t.shape)} but q has shape {list(q.shape)} "
                             f"(q, k, v are all {layout})")


def _check_options(segment_lengths, dilated_ratios, causal, offsets, tail, scale, grad_mode):
    """The options shared by dilated_attention and dilated_attention_varlen, checked; returns
    (segments, dilations, scale) normalised."""
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
    return segments, dilations, scale


def check_key_padding_mask(mask, batch, seq):
    """A key_padding_mask must be a [B, N] torch.bool CPU tensor (True = pad, torchscale's convention)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"longnet_torch: key_padding_mask must be a torch.Tensor of dtype torch.bool, got "
                        f"{type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"longnet_torch: key_padding_mask has dtype {mask.dtype}; it must be torch.bool "
                        f"(True = pad)")
    if mask.device.type != "cpu":
        raise ValueError(f"longnet_torch: key_padding_mask is on device {mask.device}; longnet_torch runs on CPU "
                         f"tensors only")
    if tuple(mask.shape) != (batch, seq):
        raise ValueError(f"longnet_torch: key_padding_mask has shape {list(mask.shape)} but must be [B, N] = "
                         f"[{batch}, {seq}]")


def key_padding_mask_from_lengths(lengths, batch, seq):
    """Per-row lengths (right padding: row b's real tokens are n < lengths[b]) as the [B, N] torch.bool
    key_padding_mask (True = pad). ``lengths``: an int32 / int64 tensor [B] (any device; B values are
    read) or a sequence of B ints, each in 0..N (0: a fully padded row)."""
    if isinstance(lengths, torch.Tensor):
        if lengths.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"longnet_torch: lengths has dtype {lengths.dtype}; it must be int32 or int64 "
                            f"(one length per batch row)")
        if lengths.dim() != 1 or lengths.shape[0] != batch:
            raise ValueError(f"longnet_torch: lengths has shape {list(lengths.shape)} but must be [B] = [{batch}]")
        values = [int(x) for x in lengths.cpu().tolist()]
    else:
        if isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__iter__"):
            raise TypeError(f"longnet_torch: lengths must be an int32/int64 tensor [B] or a sequence of ints, got "
                            f"{type(lengths).__name__} {lengths!r}")
        values = []
        for i, x in enumerate(lengths):
            if isinstance(x, bool) or not isinstance(x, numbers.Integral):
                raise TypeError(f"longnet_torch: lengths[{i}] must be an int, got {type(x).__name__} {x!r}")
            values.append(int(x))
        if len(values) != batch:
            raise ValueError(f"longnet_torch: lengths has {len(values)} entries but the batch has B = {batch} rows")
    for b, n in enumerate(values):
        if n < 0 or n > seq:
            raise ValueError(f"longnet_torch: lengths[{b}] = {n} is outside 0..N = 0..{seq}")
    return torch.arange(seq)[None, :] >= torch.tensor(values, dtype=torch.int64).reshape(batch, 1)


def resolve_padding(key_padding_mask, lengths, batch, seq):
    """The checked [B, N] bool mask of either argument (None when both are None; both given is an error)."""
    if lengths is not None:
        if key_padding_mask is not None:
            raise ValueError("longnet_torch: pass key_padding_mask or lengths, not both")
        return key_padding_mask_from_lengths(lengths, batch, seq)
    if key_padding_mask is not None:
        check_key_padding_mask(key_padding_mask, batch, seq)
    return key_padding_mask


def dilated_attention(q, k, v, segment_lengths, dilated_ratios, causal=False, offsets="paper", tail="exact",
                      scale=None, grad_mode="exact", return_lse=False, key_padding_mask=None, lengths=None):
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
        key_padding_mask: optional [B, N] torch.bool tensor, True = pad (torchscale's convention). The real
            tokens of each batch row, in order, are attended as one sequence alone (segments start at the
            row's first real token, so left and right padding and holes all work; no token sees a pad):
            exactly ``dilated_attention_varlen`` on the packed real tokens. Pads get out 0, lse -inf and
            zero gradients; the pads of q, k, v are never read (longnet/padding.hpp).
        lengths: optional int32 / int64 tensor [B] (or B ints), instead of key_padding_mask: right
            padding, row b's real tokens are n < lengths[b] (0 <= lengths[b] <= N); the same as
            ``key_padding_mask=torch.arange(N) >= lengths[:, None]``.

    Returns:
        out [B, N, H, D] (contiguous, the inputs' dtype), or (out, lse) when return_lse.

    Raises:
        TypeError: a non-tensor input, an unsupported or mixed dtype, options of the wrong type, a
            key_padding_mask that is not torch.bool.
        ValueError: a non-CPU tensor, a wrong shape, an empty branch list, a length or ratio < 1, counts
            that differ, an unknown offsets / tail / grad_mode, a non-finite scale, a key_padding_mask of
            a shape other than [B, N]; lengths not [B], or a length outside 0..N (named); both
            key_padding_mask and lengths. TypeError for lengths of a non-integer dtype.
    """
    _check_tensor(q, "q", None)
    _check_tensor(k, "k", q)
    _check_tensor(v, "v", q)
    segments, dilations, scale = _check_options(segment_lengths, dilated_ratios, causal, offsets, tail, scale,
                                                grad_mode)
    key_padding_mask = resolve_padding(key_padding_mask, lengths, q.shape[0], q.shape[1])
    out, lse = _C.dilated_attention(q, k, v, segments, dilations, bool(causal), offsets, tail, scale, grad_mode,
                                    key_padding_mask)
    return (out, lse) if return_lse else out


def dilated_attention_varlen(q, k, v, cu_seqlens, segment_lengths, dilated_ratios, causal=False, offsets="paper",
                             tail="exact", scale=None, grad_mode="exact", return_lse=False):
    """Dilated attention of B sequences packed end to end: q, k, v [total_tokens, H, D] and ``cu_seqlens``
    (flash-attn's convention: B + 1 offsets, int32 or int64 tensor or a sequence of ints; sequence b is rows
    ``cu_seqlens[b]:cu_seqlens[b+1]``). With autograd.

    Every sequence is attended exactly as if run alone through ``dilated_attention`` with the same options
    (segments restart at its first token, its own tails, causal mask and head offsets; no token attends
    across a boundary); length-0 sequences are allowed. Cost is proportional to the tokens, not to
    B x the longest sequence. The options are ``dilated_attention``'s.

    Returns:
        out [total, H, D] (contiguous), or (out, lse) with lse [total, H] (float32; float64 for float64
        inputs) when return_lse.

    Raises:
        TypeError: as ``dilated_attention``; cu_seqlens of a dtype other than int32 / int64.
        ValueError: as ``dilated_attention``; cu_seqlens not 1-D, or whose values are bad (empty, first not 0,
            negative, decreasing, past or short of total): longnet's message naming the index and value.
    """
    layout = "[total_tokens, H, D]"
    _check_tensor(q, "q", None, 3, layout)
    _check_tensor(k, "k", q, 3, layout)
    _check_tensor(v, "v", q, 3, layout)
    segments, dilations, scale = _check_options(segment_lengths, dilated_ratios, causal, offsets, tail, scale,
                                                grad_mode)
    if not isinstance(cu_seqlens, torch.Tensor):
        cu_seqlens = torch.tensor(_int_offsets(cu_seqlens), dtype=torch.int64)
    elif cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"longnet_torch: cu_seqlens has dtype {cu_seqlens.dtype}; it must be int32 or int64")
    elif cu_seqlens.device.type != "cpu":
        cu_seqlens = cu_seqlens.cpu()  # B + 1 offsets, as flash-attn users keep them on the GPU
    out, lse = _C.dilated_attention_varlen(q, k, v, cu_seqlens, segments, dilations, bool(causal), offsets, tail,
                                           scale, grad_mode)
    return (out, lse) if return_lse else out


def _int_offsets(value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"longnet_torch: cu_seqlens must be an int32/int64 tensor or a sequence of ints, got "
                        f"{type(value).__name__} {value!r}")
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):
            raise TypeError(f"longnet_torch: cu_seqlens[{i}] must be an int, got {type(x).__name__} {x!r}")
        out.append(int(x))
    return out
