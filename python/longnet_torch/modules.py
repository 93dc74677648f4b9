# SPDX-License-Identifier: Apache-2.0
"""Modules whose parameter names and shapes are torchscale's, so its state dicts load into them.

- ``XPos``: torchscale's XPOS relative positions (buffer ``scale``).
- ``MultiheadDilatedAttention``: torchscale's ``DilatedAttention`` (a ``MultiheadAttention``):
  ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``inner_attn_ln`` (Sub-LN), ``xpos.scale``.
- ``LongNetDecoder``: torchscale's ``LongNetDecoder`` with ``subln=True``, ``xpos_rel_pos=True``,
  ``decoder_normalize_before=True``, no absolute positions, untied output projection: the configuration
  of the shared fixtures (``decoder_00``).
- ``LongNetEncoder``: torchscale's ``LongNetEncoder`` on token embeddings (the slide-encoder use):
  ``layers.L.*``, ``layer_norm``, ``layernorm_embedding``; pre-LN with Sub-LN or post-LN, configured from
  torchscale's ``EncoderConfig`` fields (``from_config``); fixtures ``encoder_00`` .. ``encoder_02``.

The computation is written from the recipe in tests/data/README.md (the fixtures are the link to
torchscale; none of its code is used here).
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

from .functional import dilated_attention, resolve_padding, _choice, _int_list, _OFFSETS, _TAILS, _GRAD_MODES


class XPos(nn.Module):
    """XPos (Sun et al., 2022) as torchscale applies it to q and k of shape [B, T, H, head_dim].

    Pair c = (2c, 2c+1) of the vector at position i is rotated by i * 10000^(-c / (head_dim/2)) and scaled
    by zeta_c^((i - a) / scale_base) (q) or its inverse (k, ``downscale=True``), with
    zeta_c = ``scale[c]`` = (2c + 0.4 head_dim) / (1.4 head_dim). A score q_i . k_j carries
    zeta^((i - j) / scale_base) for any anchor a that q_j and k_j share. The factors are computed in
    float64 and cast to the input's dtype once.

    Two forms of the anchor a:

    - centred (``forward(x)``, torchscale's): a = ceil(T/2) for every position. The factors grow as
      zeta_min^(-T / (2 scale_base)): float32 and bfloat16 reach T of about 72K tokens (scale_base 512),
      float16 about 9K; past that torchscale produces inf/NaN and this raises ValueError.
    - anchored (``forward(x, segment_length=w)``, what ``MultiheadDilatedAttention`` uses, SPEC §10):
      a = floor(i / w) w + min(w/2, reach), the centre of position i's segment of length w. Every factor
      is bounded by zeta_min^(-w / (2 scale_base)) whatever T, so any sequence length works; a query and
      a key of the same segment get exactly the centred form's score factor. Only pairs inside one
      segment of length w are meaningful (what dilated attention scores).

    A segment longer than ``segment_limit(dtype)`` (2 x reach: float32 about 66.8K positions at
    scale_base 512) cannot give all its rows one anchor; ``MultiheadDilatedAttention`` runs it as blocks of
    ``block_length(r, dtype)`` positions, each anchored on its own (``segment_length=P``), with the queries
    decayed onto each key block's anchor (``shift``), as longnet's C++ layer does (SPEC §10).
    ``anchor_reach`` (optional int) caps the reach, which moves that cut to short lengths (tests).
    """

    def __init__(self, head_dim, scale_base=512, anchor_reach=None):
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"longnet_torch.XPos: head_dim must be even, got {head_dim}")
        if anchor_reach is not None and (isinstance(anchor_reach, bool) or not isinstance(anchor_reach, int)
                                         or anchor_reach < 1):
            raise ValueError(f"longnet_torch.XPos: anchor_reach must be None or an int >= 1, got {anchor_reach!r}")
        self.head_dim = head_dim
        self.scale_base = scale_base
        self.anchor_reach = anchor_reach
        self.register_buffer("scale", (torch.arange(0, head_dim, 2) + 0.4 * head_dim) / (1.4 * head_dim))

    def _angles(self, length, device, positions=None):
        pos = torch.arange(length, dtype=torch.float64, device=device) if positions is None else positions.to(
            device=device, dtype=torch.float64)
        half = self.head_dim // 2
        inv_freq = 10000.0 ** (-torch.arange(half, dtype=torch.float64, device=device) / half)
        theta = pos[..., None] * inv_freq
        return pos, torch.cos(theta), torch.sin(theta)

    def factors(self, length, device=None):
        """float64 cos, sin of the rotation angles and the centred q scale factors, each [T, head_dim/2]
        (k: 1/scale)."""
        pos, cos, sin = self._angles(length, device)
        centre = (length + 1) // 2
        zeta = self.scale.to(device=device, dtype=torch.float64)
        return cos, sin, zeta[None, :] ** ((pos - centre) / self.scale_base)[:, None]

    def reach(self, dtype):
        """Largest distance from the anchor whose factor fits ``dtype`` with 1000x headroom (as longnet's
        C++ rotary_embedding::reach())."""
        log_zeta = float(torch.log(self.scale.to(torch.float64)).abs().max())
        if not log_zeta > 0:
            reach = 1 << 62
        else:
            limit = math.log(torch.finfo(dtype).max) - math.log(1000.0)
            reach = int(min(limit / log_zeta * self.scale_base, 1e15))
        return reach if self.anchor_reach is None else min(reach, self.anchor_reach)

    def segment_limit(self, dtype):
        """The longest segment whose rows all lie within ``reach(dtype)`` of its anchor (2 x reach)."""
        return 2 * self.reach(dtype)

    def block_length(self, dilation, dtype):
        """The block length of a segment longer than ``segment_limit(dtype)`` in a branch of dilation r:
        the largest multiple of r within the limit. ValueError when r itself exceeds the limit."""
        P = self.segment_limit(dtype) // dilation * dilation
        if P < 1:
            raise ValueError(f"longnet_torch.XPos: dilation {dilation} is longer than the XPos block limit "
                             f"{self.segment_limit(dtype)} of {dtype} (a block holds whole dilation steps); use a "
                             f"larger scale_base or float64")
        return P

    def anchored_factors(self, length, segment_length, dtype=torch.float32, device=None, positions=None, origin=0,
                         shift=0):
        """float64 cos, sin and the anchored q scale factors [T, head_dim/2] for segments of
        ``segment_length`` (k: 1/scale). ``positions``: optional integer positions [..., T] to use instead
        of 0..T-1 (the factors are then [..., T, head_dim/2]). ``origin``: segments start at this position
        (the anchors of position i are those of i - origin; the angles stay i's). ``shift`` (queries of a
        block pair, a positive multiple of segment_length): the anchor moved ``shift`` positions back, onto
        the key block's; every factor is then below 1 and nothing is checked. Raises ValueError when a
        segment is too long for ``dtype``."""
        if isinstance(segment_length, bool) or not isinstance(segment_length, int) or segment_length < 1:
            raise ValueError(f"longnet_torch.XPos: segment_length must be an int >= 1, got {segment_length!r}")
        if shift and (shift < segment_length or shift % segment_length):
            raise ValueError(f"longnet_torch.XPos: shift {shift} is not a positive multiple of segment_length "
                             f"{segment_length}")
        pos, cos, sin = self._angles(length, device, positions)
        reach = self.reach(dtype)
        index = torch.arange(length, device=device) if positions is None else positions.to(device=device)
        offset_in_segment = torch.remainder(index - origin, segment_length)
        distance = offset_in_segment - min(segment_length // 2, reach) + shift
        if not shift and distance.numel() > 0 and int(distance.abs().max()) > reach:
            raise ValueError(f"longnet_torch.XPos: segment_length {segment_length} puts a position "
                             f"{int(distance.abs().max())} from its anchor; {dtype} holds the XPos factor only up "
                             f"to {reach} (use float64, a larger scale_base or shorter segments)")
        zeta = self.scale.to(device=device, dtype=torch.float64)
        return cos, sin, zeta ** (distance.to(torch.float64) / self.scale_base)[..., None]

    def forward(self, x, downscale=False, segment_length=None, positions=None, origin=0, shift=0):
        """x [B, T, H, head_dim]. ``positions``: optional [B, T] integer positions (anchored form only, with
        ``segment_length``), e.g. each token's index among its row's real tokens in a padded batch.
        ``origin``, ``shift``: see ``anchored_factors`` (blocks of a long segment)."""
        if x.dim() != 4 or x.shape[-1] != self.head_dim:
            raise ValueError(f"longnet_torch.XPos: expected [B, T, H, {self.head_dim}], got {list(x.shape)}")
        if segment_length is None:
            if positions is not None:
                raise ValueError("longnet_torch.XPos: positions need the anchored form (pass segment_length)")
            cos, sin, scale = self.factors(x.shape[1], x.device)
        else:
            if positions is not None and tuple(positions.shape) != tuple(x.shape[:2]):
                raise ValueError(f"longnet_torch.XPos: positions must be [B, T] = {list(x.shape[:2])}, got "
                                 f"{list(positions.shape)}")
            cos, sin, scale = self.anchored_factors(x.shape[1], segment_length, x.dtype, x.device, positions, origin,
                                                    shift)
        if downscale:
            scale = 1.0 / scale
        cos = (cos * scale).to(x.dtype).unsqueeze(-2)  # [T, 1, hd/2] or [B, T, 1, hd/2]
        sin = (sin * scale).to(x.dtype).unsqueeze(-2)
        if not (torch.isfinite(cos).all() and torch.isfinite(sin).all()):
            raise ValueError(f"longnet_torch.XPos: {x.shape[1]} positions overflow {x.dtype} in the centred form "
                             f"(factors up to zeta_min^(T/{2 * self.scale_base})); pass segment_length for the "
                             f"anchored form, or use float64")
        x_even, x_odd = x[..., 0::2], x[..., 1::2]
        y_even = x_even * cos - x_odd * sin
        y_odd = x_odd * cos + x_even * sin
        return torch.stack((y_even, y_odd), dim=-1).flatten(-2)


def _rows(x, first, total, fill):
    """x [B, n, ...] placed at rows first .. first + n of a [B, total, ...] tensor filled with ``fill``."""
    before = x.new_full((x.shape[0], first) + tuple(x.shape[2:]), fill)
    after = x.new_full((x.shape[0], total - first - x.shape[1]) + tuple(x.shape[2:]), fill)
    return torch.cat((before, x, after), dim=1)


def _merge(outs, lses, detach=False):
    """Σ exp(lse_g - logsumexp(lse)) out_g over the groups g: one softmax over the union of their keys.
    Rows no group keeps (uncovered rows, pads: every lse -inf) get weight 0; the logsumexp runs on zeros
    there, since its gradient at an all -inf input is NaN (the kernels' backward ignores the lse gradient
    of such rows, but no NaN need exist at all). ``detach``: the weights held constant (stop_grad_weights)."""
    lse = torch.stack(lses)  # [G, B, T, H]
    kept = torch.isfinite(lse).any(dim=0)
    total = torch.logsumexp(torch.where(kept, lse, torch.zeros_like(lse)), dim=0)
    weights = torch.where(kept, torch.exp(lse - total), torch.zeros_like(lse))
    if detach:
        weights = weights.detach()
    return sum(wt[..., None] * o.to(wt.dtype) for wt, o in zip(weights, outs))


class MultiheadDilatedAttention(nn.Module):
    """Multi-head LongNet attention with torchscale's parameter names and shapes.

    ``forward(query, key=None, value=None, ..., is_causal=False)`` takes [B, T, embed_dim] (key and value
    default to query) and returns ``(attn, None)`` as torchscale's ``MultiheadAttention`` does:
    q, k, v projections, XPos on q and k (absolute positions, before any row is selected), dilated
    attention over (segment_lengths, dilated_ratios), Sub-LN (``inner_attn_ln``) over the concatenated
    heads, ``out_proj``.

    Defaults reproduce torchscale: ``offsets="torchscale"``, ``tail="zero_pad"``,
    ``grad_mode="stop_grad_weights"``; pass ``offsets="paper"``, ``tail="exact"``, ``grad_mode="exact"``
    for the paper's head offsets, no padding keys and the exact gradient. Incremental decoding, attn_mask,
    rel_pos and dropout are not supported (ValueError).

    ``key_padding_mask``: [B, T] torch.bool, True = pad (torchscale's convention), for the query and key
    rows alike (self-attention: key and value are [B, T, embed_dim] like query). Each batch row's real
    tokens, in order, are attended as one sequence alone: XPos positions count the real tokens only and
    segments start at the row's first real token, so left padding, right padding and holes give every
    real row exactly the result of that sequence run unpadded; no token sees a pad. Pad rows of the
    output are 0 and receive no gradient; whatever the pads of the input hold (even NaN) changes nothing.
    ``lengths``: an int32 / int64 tensor [B] instead of the mask, for right padding (row b's real tokens
    are the first lengths[b]).
    """

    def __init__(self, embed_dim, num_heads, segment_lengths, dilated_ratios, subln=True, xpos=True,
                 xpos_scale_base=512, bias=True, layernorm_eps=1e-5, offsets="torchscale", tail="zero_pad",
                 grad_mode="stop_grad_weights", scale=None, device=None, dtype=None):
        super().__init__()
        if not isinstance(embed_dim, int) or not isinstance(num_heads, int) or embed_dim < 1 or num_heads < 1:
            raise ValueError(f"longnet_torch.MultiheadDilatedAttention: embed_dim and num_heads must be positive "
                             f"ints, got {embed_dim!r}, {num_heads!r}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"longnet_torch.MultiheadDilatedAttention: embed_dim {embed_dim} is not a multiple of "
                             f"num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.segment_lengths = _int_list(segment_lengths, "segment_lengths")
        self.dilated_ratios = _int_list(dilated_ratios, "dilated_ratios")
        if not self.segment_lengths or len(self.segment_lengths) != len(self.dilated_ratios):
            raise ValueError(f"longnet_torch.MultiheadDilatedAttention: {len(self.segment_lengths)} segment_lengths "
                             f"and {len(self.dilated_ratios)} dilated_ratios; need at least one, equally many")
        self.offsets = _choice(offsets, "offsets", _OFFSETS)
        self.tail = _choice(tail, "tail", _TAILS)
        self.grad_mode = _choice(grad_mode, "grad_mode", _GRAD_MODES)
        self.scale = scale
        factory = {"device": device, "dtype": dtype}
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.inner_attn_ln = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory) if subln else None
        self.xpos = XPos(self.head_dim, xpos_scale_base) if xpos else None
        self.reset_parameters()

    def reset_parameters(self):
        # torchscale's initialisation: xavier-uniform, gain 1/sqrt(2) for q, k, v; out_proj bias 0
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.out_proj.bias is not None:
            nn.init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key=None, value=None, incremental_state=None, key_padding_mask=None, attn_mask=None,
                rel_pos=None, is_first_step=False, is_causal=False, lengths=None):
        for name, arg in (("incremental_state", incremental_state), ("attn_mask", attn_mask), ("rel_pos", rel_pos)):
            if arg is not None:
                raise ValueError(f"longnet_torch.MultiheadDilatedAttention: {name} is not supported (pass None); "
                                 f"use is_causal=True for a causal mask, key_padding_mask for padding")
        key = query if key is None else key
        value = key if value is None else value
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"longnet_torch.MultiheadDilatedAttention: query must be [B, T, {self.embed_dim}], got "
                             f"{list(query.shape)}")
        if key.shape != query.shape or value.shape != query.shape:
            raise ValueError(f"longnet_torch.MultiheadDilatedAttention: key {list(key.shape)} and value "
                             f"{list(value.shape)} must have the query's shape {list(query.shape)}")
        B, T, _ = query.shape
        key_padding_mask = resolve_padding(key_padding_mask, lengths, B, T)
        if key_padding_mask is not None:
            # pads are not attended, but a pad holding inf/NaN would still reach the projections' weight
            # gradients (0 * NaN): zero them first
            pad = key_padding_mask[..., None]
            zq = query.masked_fill(pad, 0.0)
            zk = zq if key is query else key.masked_fill(pad, 0.0)
            value = zk if value is key else zq if value is query else value.masked_fill(pad, 0.0)
            query, key = zq, zk
        q = self.q_proj(query).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(key).view(B, T, self.num_heads, self.head_dim)
        v = self.v_proj(value).view(B, T, self.num_heads, self.head_dim)
        attn = self._attention(q, k, v, bool(is_causal), key_padding_mask=key_padding_mask)
        attn = attn.reshape(B, T, self.embed_dim)
        if self.inner_attn_ln is not None:
            attn = self.inner_attn_ln(attn)
        out = self.out_proj(attn)
        if key_padding_mask is not None:
            out = out.masked_fill(key_padding_mask[..., None], 0.0)  # pad rows: 0, no gradient
        return out, None

    def _attention(self, q, k, v, causal, key_padding_mask=None):
        """Dilated attention of q, k, v [B, T, H, hd] with the anchored XPos: the branches of one segment
        length w run on q and k scaled by XPos anchored on segments of w (one kernel call); the calls of
        different w merge through their log-sum-exps as the kernel merges branches (weights held
        constant in the backward under grad_mode "stop_grad_weights"). With a key_padding_mask, XPos
        positions are each token's index among its row's real tokens. A branch whose segment (clipped to
        the sequence) is longer than ``xpos.segment_limit`` runs as blocks (``_long_branch``; causal only:
        non-causal XPos scores past it overflow in exact arithmetic too)."""
        options = dict(causal=causal, offsets=self.offsets, tail=self.tail, scale=self.scale,
                       key_padding_mask=key_padding_mask)
        if self.xpos is None:
            return dilated_attention(q, k, v, self.segment_lengths, self.dilated_ratios, grad_mode=self.grad_mode,
                                     **options)
        positions = None
        if key_padding_mask is not None:  # real tokens 0, 1, 2, ... per row; pads (never read) clamped to 0
            positions = (torch.cumsum((~key_padding_mask).to(torch.int64), dim=1) - 1).clamp(min=0)
        if key_padding_mask is None:
            longest = q.shape[1]
        else:
            longest = int((~key_padding_mask).sum(dim=1).max()) if q.shape[0] else 0
        limit = self.xpos.segment_limit(q.dtype)
        long_branches = [i for i, w in enumerate(self.segment_lengths) if min(w, longest) > limit]
        if long_branches and not causal:
            w = self.segment_lengths[long_branches[0]]
            raise ValueError(f"longnet_torch.MultiheadDilatedAttention: non-causal XPos over a segment of "
                             f"{min(w, longest)} positions: scores of keys after the query grow as "
                             f"zeta^(-(j - i)/scale_base) and overflow {q.dtype} (the longest segment that holds is "
                             f"{limit}); use is_causal=True, shorter segments, a larger xpos_scale_base or float64")
        groups = {}  # segment length -> indices of its branches, in first-appearance order
        for i, w in enumerate(self.segment_lengths):
            if i not in long_branches:
                groups.setdefault(w, []).append(i)
        outs, lses = [], []
        for w, idx in groups.items():
            qw = self.xpos(q, segment_length=w, positions=positions)
            kw = self.xpos(k, downscale=True, segment_length=w, positions=positions)
            out, lse = dilated_attention(qw, kw, v, [w] * len(idx), [self.dilated_ratios[i] for i in idx],
                                         grad_mode=self.grad_mode, return_lse=True, **options)
            if len(groups) == 1 and not long_branches:
                return out
            outs.append(out)
            lses.append(lse)
        for i in long_branches:
            out, lse = self._long_branch(q, k, v, self.segment_lengths[i], self.dilated_ratios[i], key_padding_mask)
            outs.append(out)
            lses.append(lse)
        return _merge(outs, lses, detach=self.grad_mode == "stop_grad_weights").to(q.dtype)

    def _long_branch(self, q, k, v, w, r, key_padding_mask):
        """(out [B, T, H, hd], lse [B, T, H]) of one causal branch (w, r) whose segments are longer than the
        XPos anchor's limit, as longnet's C++ layer runs it (nn/multihead_attention.hpp; SPEC §10): each
        segment in blocks of P = ``xpos.block_length(r)`` positions, keys anchored per block; block b
        against block b itself is causal attention with segment length P, block b against block b - m a
        non-causal call on the queries' rows [mP, n) (decayed onto the key block's anchor, padded with zero
        rows to whole blocks: the padding's outputs are dropped) over the keys' rows [0, n - mP). The
        pieces merge through their log-sum-exps with differentiable weights (under "stop_grad_weights" the
        branch's own weight is held constant by the caller). Padded batches: each row's real tokens alone."""
        B, T, H, hd = q.shape
        if key_padding_mask is not None:
            out = q.new_zeros(B, T, H, hd)
            lse = None
            for b in range(B):
                real = torch.nonzero(~key_padding_mask[b]).flatten()
                if real.numel() == 0:
                    continue
                ob, lb = self._long_branch(q[b:b + 1, real], k[b:b + 1, real], v[b:b + 1, real], w, r, None)
                if lse is None:
                    lse = torch.full((B, T, H), -math.inf, dtype=lb.dtype)
                out = out.index_put((torch.tensor([b]), real), ob[0])
                lse = lse.index_put((torch.tensor([b]), real), lb[0])
            if lse is None:
                lse = torch.full((B, T, H), -math.inf, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32)
            return out, lse
        P = self.xpos.block_length(r, q.dtype)
        opts = dict(offsets=self.offsets, tail="exact", scale=self.scale, grad_mode="exact", return_lse=True)
        outs, lses = [], []
        for S in range(0, T, w):
            n = min(w, T - S)
            blocks = -(-n // P)
            pos = torch.arange(S, S + n).expand(B, n)
            kd = self.xpos(k[:, S:S + n], downscale=True, segment_length=P, positions=pos, origin=S)
            qd = self.xpos(q[:, S:S + n], segment_length=P, positions=pos, origin=S)
            o, l = dilated_attention(qd, kd, v[:, S:S + n], [P], [r], causal=True, **opts)
            outs.append(_rows(o, S, T, 0.0))
            lses.append(_rows(l, S, T, -math.inf))
            for m in range(1, blocks):
                length, nq = (blocks - m) * P, n - m * P
                qm = self.xpos(q[:, S + m * P:S + n], segment_length=P, positions=pos[:, m * P:], origin=S + m * P,
                               shift=m * P)
                qm = F.pad(qm, (0, 0, 0, 0, 0, length - nq))
                o, l = dilated_attention(qm, kd[:, :length], v[:, S:S + length], [P], [r], causal=False, **opts)
                outs.append(_rows(o[:, :nq], S + m * P, T, 0.0))
                lses.append(_rows(l[:, :nq], S + m * P, T, -math.inf))
        if len(outs) == 1:
            return outs[0], lses[0]
        lse = torch.stack(lses)
        kept = torch.isfinite(lse).any(dim=0)
        total = torch.logsumexp(torch.where(kept, lse, torch.zeros_like(lse)), dim=0)
        return _merge(outs, lses).to(q.dtype), torch.where(kept, total, torch.full_like(total, -math.inf))

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, segment_lengths={self.segment_lengths}, "
                f"dilated_ratios={self.dilated_ratios}, offsets={self.offsets!r}, tail={self.tail!r}, "
                f"grad_mode={self.grad_mode!r}")


class _FeedForward(nn.Module):
    """fc1, GELU (exact erf), Sub-LN ``ffn_layernorm`` over the hidden units, fc2."""

    def __init__(self, embed_dim, ffn_dim, layernorm_eps, subln, factory):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, ffn_dim, **factory)
        self.fc2 = nn.Linear(ffn_dim, embed_dim, **factory)
        self.ffn_layernorm = nn.LayerNorm(ffn_dim, eps=layernorm_eps, **factory) if subln else None

    def forward(self, x):
        x = F.gelu(self.fc1(x))
        if self.ffn_layernorm is not None:
            x = self.ffn_layernorm(x)
        return self.fc2(x)


class LongNetDecoderLayer(nn.Module):
    """Pre-LN decoder layer: x + attn(LN(x)), then x + ffn(LN(x)); torchscale's names."""

    def __init__(self, embed_dim, num_heads, ffn_dim, segment_lengths, dilated_ratios, layernorm_eps=1e-5,
                 xpos_scale_base=512, subln=True, attention_options=None, factory=None):
        super().__init__()
        factory = factory or {}
        self.self_attn = MultiheadDilatedAttention(embed_dim, num_heads, segment_lengths, dilated_ratios, subln=subln,
                                                   xpos=True, xpos_scale_base=xpos_scale_base,
                                                   layernorm_eps=layernorm_eps, **(attention_options or {}), **factory)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory)
        self.ffn = _FeedForward(embed_dim, ffn_dim, layernorm_eps, subln, factory)
        self.final_layer_norm = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory)

    def forward(self, x, self_attn_padding_mask=None, lengths=None):
        """x [B, T, embed_dim]; ``self_attn_padding_mask`` [B, T] bool, True = pad (torchscale's name), or
        ``lengths`` int32 / int64 [B] (right padding)."""
        if lengths is not None:
            self_attn_padding_mask = resolve_padding(self_attn_padding_mask, lengths, x.shape[0], x.shape[1])
        h = self.self_attn_layer_norm(x)
        x = x + self.self_attn(h, h, h, key_padding_mask=self_attn_padding_mask, is_causal=True)[0]
        return x + self.ffn(self.final_layer_norm(x))


class LongNetDecoder(nn.Module):
    """torchscale's LongNetDecoder in the fixtures' configuration (subln, xpos, pre-LN, no absolute
    positions, embedding scale 1, untied output projection without bias): tokens [B, T] -> logits
    [B, T, vocab]. ``attention_options`` go to every ``MultiheadDilatedAttention`` (e.g.
    ``{"grad_mode": "exact"}``)."""

    def __init__(self, vocab_size, embed_dim, num_heads, ffn_dim, num_layers, segment_lengths, dilated_ratios,
                 layernorm_eps=1e-5, xpos_scale_base=512, subln=True, attention_options=None, device=None,
                 dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.embed_tokens = nn.Embedding(vocab_size, embed_dim, **factory)
        self.layers = nn.ModuleList([
            LongNetDecoderLayer(embed_dim, num_heads, ffn_dim, segment_lengths, dilated_ratios, layernorm_eps,
                                xpos_scale_base, subln, attention_options, factory)
            for _ in range(num_layers)])
        self.layer_norm = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory)
        self.output_projection = nn.Linear(embed_dim, vocab_size, bias=False, **factory)

    def forward(self, tokens, return_hidden=False, self_attn_padding_mask=None, lengths=None):
        """tokens [B, T]. ``self_attn_padding_mask``: optional [B, T] bool, True = pad (torchscale's
        ``Decoder.forward`` argument): each row's real tokens are decoded as that sequence alone (positions
        and segments restart at its first real token, so left-padded prompts work). The logits and hidden
        states of pad rows are meaningless (row-wise layers of the pad token's embedding): leave them out
        of the loss. ``lengths``: an int32 / int64 tensor [B] instead of the mask (right padding: row b's
        real tokens are the first lengths[b])."""
        if lengths is not None or self_attn_padding_mask is not None:
            if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
                raise ValueError(f"longnet_torch.LongNetDecoder: tokens must be [B, T], got "
                                 f"{list(getattr(tokens, 'shape', []))}")
            self_attn_padding_mask = resolve_padding(self_attn_padding_mask, lengths, *tokens.shape)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, self_attn_padding_mask)
        hidden = self.layer_norm(x)
        logits = self.output_projection(hidden)
        return (logits, hidden) if return_hidden else logits
