# SPDX-License-Identifier: Apache-2.0
"""longnet_torch: longnet's dilated attention kernels (LongNet, Ding et al. 2023) for PyTorch on CPU.

    import longnet_torch
    out = longnet_torch.dilated_attention(q, k, v, [2048, 4096], [1, 2], causal=True)   # [B, N, H, D]
    attn = longnet_torch.MultiheadDilatedAttention(768, 12, [2048, 4096], [1, 2])       # torchscale's names
    out = longnet_torch.dilated_attention_varlen(q, k, v, cu_seqlens, [2048], [1])       # packed [total, H, D]
    y, _ = attn(x, key_padding_mask=pad)                                                  # pad: [B, N] bool, True = pad
    y, _ = attn(x, lengths=lengths)                                                       # or lengths: int [B]
    enc = longnet_torch.LongNetEncoder.from_config(cfg)                                   # torchscale EncoderConfig
    y = enc(tiles, lengths=lengths)                                                       # [B, N, E] -> [B, N, E]

Threads: the kernels run on torch.get_num_threads() OpenMP threads (torch.set_num_threads changes it).
"""

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C
from .functional import dilated_attention, dilated_attention_varlen
from .modules import LongNetDecoder, LongNetDecoderLayer, MultiheadDilatedAttention, XPos
from .encoder import LongNetEncoder, LongNetEncoderLayer

__version__ = _C.longnet_version
simd_isa = _C.simd_isa

__all__ = ["dilated_attention", "dilated_attention_varlen", "MultiheadDilatedAttention", "XPos", "LongNetDecoder",
           "LongNetDecoderLayer", "LongNetEncoder", "LongNetEncoderLayer", "simd_isa", "__version__"]
