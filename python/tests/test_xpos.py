# SPDX-License-Identifier: Apache-2.0
"""Anchored XPos (SPEC §10) in longnet_torch: equal to the centred (torchscale) form inside its range,
finite and float-vs-double consistent past it (float32 centred form stops near 72K tokens)."""

import pytest
import torch

import longnet_torch
from conftest import rel_err


def centred_attention(m, q, k, v, causal):
    """The old form: centred XPos on the whole sequence, then all branches in one kernel call."""
    return longnet_torch.dilated_attention(m.xpos(q), m.xpos(k, downscale=True), v, m.segment_lengths,
                                           m.dilated_ratios, causal=causal, offsets=m.offsets, tail=m.tail,
                                           grad_mode=m.grad_mode)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("grad_mode", ["exact", "stop_grad_weights"])
@pytest.mark.parametrize("offsets", ["paper", "torchscale"])
def test_anchored_equals_centred_in_range(dtype, tol, grad_mode, offsets):
    torch.manual_seed(1)
    m = longnet_torch.MultiheadDilatedAttention(32, 4, [8, 16, 16, 40], [1, 2, 4, 4], offsets=offsets,
                                                tail="exact", grad_mode=grad_mode, dtype=dtype)
    B, T, H, hd = 2, 93, 4, 8
    q, k, v = (torch.randn(B, T, H, hd, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(B, T, H, hd, dtype=dtype)
    for causal in (False, True):
        anchored = m._attention(q, k, v, causal)
        grads_a = torch.autograd.grad((anchored * g).sum(), (q, k, v))
        centred = centred_attention(m, q, k, v, causal)
        grads_c = torch.autograd.grad((centred * g).sum(), (q, k, v))
        assert rel_err(anchored, centred) <= tol
        for a, c in zip(grads_a, grads_c):
            assert rel_err(a, c) <= tol


def test_decoder_anchored_equals_centred_in_range():
    torch.manual_seed(2)
    dec = longnet_torch.LongNetDecoder(50, 32, 4, 64, 2, [8, 32], [1, 2], dtype=torch.float64,
                                       attention_options={"grad_mode": "exact"})
    tokens = torch.randint(0, 50, (1, 70))
    logits = dec(tokens)
    for layer in dec.layers:  # the old form, as a reference
        attn = layer.self_attn
        attn._attention = (lambda m: lambda q, k, v, causal, key_padding_mask=None:
                           centred_attention(m, q, k, v, causal))(attn)
    assert rel_err(logits, dec(tokens)) <= 1e-12


def test_xpos_segment_factors_bounded_past_centred_range():
    x = longnet_torch.XPos(64)
    q = torch.randn(1, 80000, 1, 64)
    with pytest.raises(ValueError, match="overflow"):
        x(q)  # the centred form cannot hold zeta^(±T/2/512) in float32 (torchscale: inf/NaN)
    y = x(q, segment_length=4096)
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match="segment_length"):
        x(q, segment_length=200000)  # one segment too long for float32


def test_attention_past_72k_float_matches_double():
    torch.manual_seed(3)
    T = 1 << 17
    m = longnet_torch.MultiheadDilatedAttention(8, 1, [128, 2048], [1, 8], offsets="paper", tail="exact",
                                                grad_mode="exact", dtype=torch.float64)
    m32 = longnet_torch.MultiheadDilatedAttention(8, 1, [128, 2048], [1, 8], offsets="paper", tail="exact",
                                                  grad_mode="exact", dtype=torch.float32)
    m32.load_state_dict({k: v.float() for k, v in m.state_dict().items()})
    x = torch.randn(1, T, 8, dtype=torch.float64, requires_grad=True)
    x32 = x.detach().float().requires_grad_(True)
    y = m(x, is_causal=True)[0]
    y32 = m32(x32, is_causal=True)[0]
    assert torch.isfinite(y32).all()
    assert rel_err(y32.double(), y) <= 1e-5
    g = torch.randn_like(y)
    (dx,) = torch.autograd.grad((y * g).sum(), x)
    (dx32,) = torch.autograd.grad((y32 * g.float()).sum(), x32)
    assert rel_err(dx32.double(), dx) <= 1e-4


@pytest.mark.parametrize("grad_mode", ["exact", "stop_grad_weights"])
@pytest.mark.parametrize("offsets", ["paper", "torchscale"])
def test_long_segments_as_blocks_equal_centred(grad_mode, offsets):
    """A segment longer than the anchor's limit runs as blocks (anchor per key block, SPEC §10): with
    anchor_reach = 6 the cut is at 12 positions, so w = 32, 64 run as blocks of 12 (some partial) in
    float64 and must equal the centred form to 1e-12, outputs and gradients."""
    torch.manual_seed(4)
    m = longnet_torch.MultiheadDilatedAttention(16, 4, [8, 32, 64, 64], [1, 2, 2, 4], offsets=offsets, tail="exact",
                                                grad_mode=grad_mode, dtype=torch.float64)
    m.xpos.anchor_reach = 6
    assert m.xpos.segment_limit(torch.float64) == 12
    B, T, H, hd = 2, 75, 4, 4
    q, k, v = (torch.randn(B, T, H, hd, dtype=torch.float64, requires_grad=True) for _ in range(3))
    g = torch.randn(B, T, H, hd, dtype=torch.float64)
    blocks = m._attention(q, k, v, True)
    grads_b = torch.autograd.grad((blocks * g).sum(), (q, k, v))
    centred = centred_attention(m, q, k, v, True)
    grads_c = torch.autograd.grad((centred * g).sum(), (q, k, v))
    assert rel_err(blocks, centred) <= 1e-12
    for a, c in zip(grads_b, grads_c):
        assert rel_err(a, c) <= 1e-12
    with pytest.raises(ValueError, match="non-causal XPos over a segment of 32 positions"):
        m._attention(q, k, v, False)


def test_long_segments_as_blocks_padded_rows_equal_each_row_alone():
    torch.manual_seed(5)
    m = longnet_torch.MultiheadDilatedAttention(16, 4, [8, 32], [1, 2], offsets="paper", tail="exact",
                                                grad_mode="exact", dtype=torch.float64)
    m.xpos.anchor_reach = 6
    B, T = 2, 40
    x = torch.randn(B, T, 16, dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, :5] = True    # left padding
    mask[1, 20:23] = True  # a hole
    y = m(x, key_padding_mask=mask, is_causal=True)[0]
    for b in range(B):
        real = ~mask[b]
        alone = m(x[b:b + 1, real], is_causal=True)[0]
        assert rel_err(y[b, real], alone[0]) <= 1e-12
        assert (y[b, mask[b]] == 0).all()
