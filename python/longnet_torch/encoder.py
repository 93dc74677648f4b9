# SPDX-License-Identifier: Apache-2.0
"""LongNetEncoder: torchscale's LongNetEncoder on token embeddings (the slide-encoder use, e.g.
Prov-GigaPath's slide encoder), with torchscale's parameter names and EncoderConfig fields, as the C++
longnet::nn::encoder (include/longnet/nn/encoder.hpp) computes it:

    x_0 = embed_scale * embeddings                 (embed_scale = sqrt(E) unless no_scale_embedding)
    x_0 = layernorm_embedding(x_0)                  (only with layernorm_embedding)
    x_l = layers[l](x_{l-1})                        non-causal dilated attention, no positions
    out = layer_norm(x_L)                           (pre-LN with normalize_output; else out = x_L)

Pre-LN layer (Sub-LN by default): x + self_attn(self_attn_layer_norm(x)), then
x + ffn(final_layer_norm(x)); post-LN layer (subln false, encoder_normalize_before false):
self_attn_layer_norm(x + self_attn(x)), then final_layer_norm(x + ffn(x)). Built from
``MultiheadDilatedAttention`` (autograd through longnet's kernels) and torch's own layers.
"""

import json
import math
import numbers
import os

import torch
from torch import nn

from .functional import resolve_padding, _int_list
from .modules import MultiheadDilatedAttention, _FeedForward

# torchscale EncoderConfig defaults of the fields read (segment_length and dilated_ratio have none)
_DEFAULTS = {"encoder_embed_dim": 768, "encoder_attention_heads": 12, "encoder_ffn_embed_dim": 3072,
             "encoder_layers": 12, "layernorm_eps": 1e-5, "normalize_output": True, "layernorm_embedding": False,
             "no_scale_embedding": True, "subln": True, "encoder_normalize_before": True}


def _config_dict(config):
    if isinstance(config, (str, os.PathLike)):
        with open(config) as f:
            config = json.load(f)
    elif not isinstance(config, dict) and hasattr(config, "__dict__"):
        config = vars(config)  # torchscale's EncoderConfig (a plain attribute object)
    if not isinstance(config, dict):
        raise TypeError(f"longnet_torch.LongNetEncoder: config must be a dict, a JSON file or an EncoderConfig, "
                        f"got {type(config).__name__}")
    return config


def _branch_list(value, name):
    if isinstance(value, str):  # "[1024, 2048]" as Prov-GigaPath writes them, or "1024"
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"longnet_torch.LongNetEncoder: config {name} = {value!r} is not a list of ints")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    return _int_list(value, name)


def _flag(config, name):
    value = config.get(name, _DEFAULTS[name])
    if not isinstance(value, bool):
        raise TypeError(f"longnet_torch.LongNetEncoder: config {name} must be true or false, got {value!r}")
    return value


def encoder_arguments(config):
    """torchscale EncoderConfig fields (a dict, a JSON file path or an EncoderConfig) -> LongNetEncoder's
    constructor arguments. torchscale's postprocessing is applied (subln forces encoder_normalize_before);
    fields longnet does not implement are refused with ValueError naming them (deepnorm, xpos_rel_pos,
    multiway, rel_pos_buckets / max_rel_pos / moe_freq / moe_expert_count > 0, an activation other than
    gelu, an output projection); dropouts, drop_path_rate, flash_attention and the like are ignored."""
    c = _config_dict(config)
    for name in ("segment_length", "dilated_ratio"):
        if c.get(name) is None:
            raise ValueError(f"longnet_torch.LongNetEncoder: config needs {name} (torchscale has no default)")
    for name in ("deepnorm", "xpos_rel_pos", "multiway"):
        if c.get(name, False):
            raise ValueError(f"longnet_torch.LongNetEncoder: config {name} = {c[name]!r} is not implemented")
    for name in ("rel_pos_buckets", "max_rel_pos", "moe_freq", "moe_expert_count"):
        if c.get(name) not in (None, 0):
            raise ValueError(f"longnet_torch.LongNetEncoder: config {name} = {c[name]!r} is not implemented "
                             f"(must be 0)")
    if c.get("activation_fn", "gelu") != "gelu":
        raise ValueError(f"longnet_torch.LongNetEncoder: config activation_fn = {c['activation_fn']!r}; only "
                         f"'gelu' is implemented")
    vocab = c.get("vocab_size", -1)
    if vocab is not None and vocab > 0 and not c.get("no_output_layer", False):
        raise ValueError(f"longnet_torch.LongNetEncoder: config vocab_size = {vocab} asks for an output projection, "
                         f"which is not implemented (set no_output_layer true or vocab_size -1: the encoder "
                         f"returns features)")
    ints = {}
    for name in ("encoder_embed_dim", "encoder_attention_heads", "encoder_ffn_embed_dim", "encoder_layers"):
        value = c.get(name, _DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"longnet_torch.LongNetEncoder: config {name} must be an int >= 1, got {value!r}")
        ints[name] = int(value)
    eps = c.get("layernorm_eps", _DEFAULTS["layernorm_eps"])
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"longnet_torch.LongNetEncoder: config layernorm_eps must be a positive number, got {eps!r}")
    subln = _flag(c, "subln")
    return dict(embed_dim=ints["encoder_embed_dim"], num_heads=ints["encoder_attention_heads"],
                ffn_dim=ints["encoder_ffn_embed_dim"], num_layers=ints["encoder_layers"],
                segment_lengths=_branch_list(c["segment_length"], "segment_length"),
                dilated_ratios=_branch_list(c["dilated_ratio"], "dilated_ratio"), layernorm_eps=float(eps),
                subln=subln, normalize_before=subln or _flag(c, "encoder_normalize_before"),
                normalize_output=_flag(c, "normalize_output"), layernorm_embedding=_flag(c, "layernorm_embedding"),
                no_scale_embedding=_flag(c, "no_scale_embedding"))


class LongNetEncoderLayer(nn.Module):
    """torchscale's EncoderLayer (names ``self_attn``, ``self_attn_layer_norm``, ``ffn``,
    ``final_layer_norm``): pre-LN x + attn(LN(x)), x + ffn(LN(x)), or post-LN LN(x + attn(x)),
    LN(x + ffn(x)); non-causal, no positions. Pad rows of the output are 0."""

    def __init__(self, embed_dim, num_heads, ffn_dim, segment_lengths, dilated_ratios, layernorm_eps=1e-5,
                 subln=True, normalize_before=True, attention_options=None, factory=None):
        super().__init__()
        factory = factory or {}
        self.normalize_before = normalize_before
        self.self_attn = MultiheadDilatedAttention(embed_dim, num_heads, segment_lengths, dilated_ratios, subln=subln,
                                                   xpos=False, layernorm_eps=layernorm_eps,
                                                   **(attention_options or {}), **factory)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory)
        self.ffn = _FeedForward(embed_dim, ffn_dim, layernorm_eps, subln, factory)
        self.final_layer_norm = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory)

    def forward(self, x, encoder_padding_mask=None, lengths=None):
        """x [B, T, embed_dim]; ``encoder_padding_mask`` [B, T] bool, True = pad (torchscale's name), or
        ``lengths`` int32 / int64 [B] (right padding). The pads of x are read only by row-wise layers."""
        if lengths is not None:
            encoder_padding_mask = resolve_padding(encoder_padding_mask, lengths, x.shape[0], x.shape[1])
        if self.normalize_before:
            h = self.self_attn_layer_norm(x)
            x = x + self.self_attn(h, key_padding_mask=encoder_padding_mask)[0]
            x = x + self.ffn(self.final_layer_norm(x))
        else:
            x = self.self_attn_layer_norm(x + self.self_attn(x, key_padding_mask=encoder_padding_mask)[0])
            x = self.final_layer_norm(x + self.ffn(x))
        return x if encoder_padding_mask is None else x.masked_fill(encoder_padding_mask[..., None], 0.0)


class LongNetEncoder(nn.Module):
    """torchscale's LongNetEncoder on token embeddings: [B, N, embed_dim] -> [B, N, embed_dim].

    Parameter names are torchscale's (``layers.L.self_attn.{q,k,v,out}_proj``, ``layers.L.self_attn.
    inner_attn_ln``, ``layers.L.self_attn_layer_norm``, ``layers.L.ffn.{fc1,fc2,ffn_layernorm}``,
    ``layers.L.final_layer_norm``, ``layer_norm``, ``layernorm_embedding``), so a torchscale encoder's
    state_dict (e.g. Prov-GigaPath's ``encoder.*`` keys without the prefix) loads with
    ``load_state_dict(strict=True)``. Build it from torchscale's EncoderConfig fields with
    ``LongNetEncoder.from_config(cfg)``, or with the arguments below.

    Attention defaults to torchscale's (``offsets="torchscale"``, ``tail="zero_pad"``,
    ``grad_mode="stop_grad_weights"``); ``attention_options`` go to every ``MultiheadDilatedAttention``
    (e.g. ``{"grad_mode": "exact"}``). Dropout and drop-path are not applied (inference and
    deterministic training).

    Padded batches: ``key_padding_mask`` [B, N] bool (True = pad; torchscale's encoder_padding_mask; any
    pattern: right, left, holes) or ``lengths`` (int32 / int64 [B], right padding). The real tokens of
    each batch row, in order, are encoded as one sequence alone (segments start at its first real token;
    no token sees a pad), so a real row's output does not depend on the padding or the other rows. Pad
    rows of the output (and of the hidden states) are 0 and get no gradient; what the pads of ``x`` hold
    (even NaN) changes nothing. torchscale itself differs here: its flash path drops the mask, so its
    pads act as keys (tests/data/README.md, encoder fixtures).
    """

    def __init__(self, embed_dim, num_heads, ffn_dim, num_layers, segment_lengths, dilated_ratios,
                 layernorm_eps=1e-5, subln=True, normalize_before=True, normalize_output=True,
                 layernorm_embedding=False, no_scale_embedding=True, attention_options=None, device=None,
                 dtype=None):
        super().__init__()
        if subln and not normalize_before:
            raise ValueError("longnet_torch.LongNetEncoder: normalize_before=False needs subln=False (torchscale "
                             "makes Sub-LN layers pre-LN)")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.embed_scale = 1.0 if no_scale_embedding else math.sqrt(embed_dim)
        self.layernorm_embedding = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory) if layernorm_embedding \
            else None
        self.layers = nn.ModuleList([
            LongNetEncoderLayer(embed_dim, num_heads, ffn_dim, segment_lengths, dilated_ratios, layernorm_eps, subln,
                                normalize_before, attention_options, factory)
            for _ in range(num_layers)])
        # torchscale builds the final LayerNorm only for pre-LN encoders with normalize_output
        self.layer_norm = nn.LayerNorm(embed_dim, eps=layernorm_eps, **factory) if normalize_before and \
            normalize_output else None

    @classmethod
    def from_config(cls, config, attention_options=None, device=None, dtype=None):
        """An encoder of torchscale's EncoderConfig fields: a dict, a config.json path or an EncoderConfig
        object (see ``encoder_arguments``; refused fields raise ValueError naming them)."""
        return cls(**encoder_arguments(config), attention_options=attention_options, device=device, dtype=dtype)

    def forward(self, x, key_padding_mask=None, lengths=None, return_all_hiddens=False):
        """x [B, N, embed_dim] token embeddings. Returns the encoder output [B, N, embed_dim], or
        (output, states) with ``return_all_hiddens``: states = [x_0, ..., x_L] (torchscale's
        encoder_states: the residual stream after the embedding and after each layer)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"longnet_torch.LongNetEncoder: x must be [B, N, {self.embed_dim}] embeddings, got "
                             f"{list(getattr(x, 'shape', []))}")
        mask = resolve_padding(key_padding_mask, lengths, x.shape[0], x.shape[1])
        if mask is not None:
            x = x.masked_fill(mask[..., None], 0.0)  # pads (even NaN) reach nothing, not even a gradient
        x = x * self.embed_scale
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
            if mask is not None:
                x = x.masked_fill(mask[..., None], 0.0)
        states = [x]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
            if mask is not None:
                x = x.masked_fill(mask[..., None], 0.0)
        return (x, states) if return_all_hiddens else x

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, embed_scale={self.embed_scale:g}"
