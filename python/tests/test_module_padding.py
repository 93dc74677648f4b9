# SPDX-License-Identifier: Apache-2.0
"""key_padding_mask in MultiheadDilatedAttention and self_attn_padding_mask in LongNetDecoder (issue 22 §4):
a padded batch (left padding, right padding, a hole, a fully padded row) gives every real row the result of
its sequence run unpadded, forward and parameter gradients; pad rows are 0 with zero input gradients and
no NaN; a mask of the wrong shape or dtype is refused."""

import pytest
import torch

import longnet_torch
from conftest import rel_err

E, HEADS = 32, 4


def padded_batch(N):
    """[5, N] bool, True = pad: right padding, left padding, a hole, unpadded, fully padded."""
    m = torch.zeros(5, N, dtype=torch.bool)
    m[0, N - 11:] = True
    m[1, :7] = True
    m[2, 3:9] = True
    m[4, :] = True
    return m


def module(segments, dilations, grad_mode, seed=3):
    torch.manual_seed(seed)
    m = longnet_torch.MultiheadDilatedAttention(E, HEADS, segments, dilations, grad_mode=grad_mode,
                                                dtype=torch.float64)
    with torch.no_grad():  # non-trivial LayerNorm and biases (torchscale initialises them to 1 / 0)
        for p in (m.inner_attn_ln.weight, m.inner_attn_ln.bias, m.q_proj.bias, m.k_proj.bias, m.out_proj.bias):
            p.add_(0.1 * torch.randn_like(p))
    return m


# segments [8, 16] (two XPos groups merged through their lse), [16, 16] (one group, two branches)
@pytest.mark.parametrize("segments,dilations", [([8, 16], [1, 2]), ([16, 16], [1, 2])], ids=["groups", "group"])
@pytest.mark.parametrize("grad_mode", ["exact", "stop_grad_weights"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_padded_module_equals_rows_alone(segments, dilations, grad_mode, causal):
    N = 40
    mask = padded_batch(N)
    B = mask.shape[0]
    m = module(segments, dilations, grad_mode)
    x = torch.randn(B, N, E, dtype=torch.float64)
    x[mask] = float("nan")  # whatever the pads hold changes nothing
    x.requires_grad_()
    dy = torch.randn(B, N, E, dtype=torch.float64)
    y = m(x, key_padding_mask=mask, is_causal=causal)[0]
    assert torch.isfinite(y).all() and torch.all(y[mask] == 0)
    (y * dy).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[mask] == 0)
    got = {n: p.grad.clone() for n, p in m.named_parameters()}

    m.zero_grad()
    xs = x.detach().clone()
    for b in range(B):
        real = (~mask[b]).nonzero().flatten()
        if real.numel() == 0:
            continue
        xb = xs[b, real][None].requires_grad_()
        yb = m(xb, is_causal=causal)[0]
        assert rel_err(y[b, real], yb[0]) <= 1e-12, b
        (yb[0] * dy[b, real]).sum().backward()
        assert rel_err(x.grad[b, real], xb.grad[0]) <= 1e-11, b
    for n, p in m.named_parameters():
        assert torch.isfinite(got[n]).all() and got[n].abs().max() > 0, n
        assert rel_err(got[n], p.grad) <= 1e-11, n


def test_padded_module_float32_left_and_right():
    """float32: left- and right-padded copies of one sequence give it the same result as unpadded."""
    m = longnet_torch.MultiheadDilatedAttention(E, HEADS, [8, 16], [1, 2])
    seq = torch.randn(1, 30, E)
    x = torch.zeros(2, 36, E)
    x[0, :30] = seq[0]
    x[1, 6:] = seq[0]
    mask = torch.ones(2, 36, dtype=torch.bool)
    mask[0, :30] = False
    mask[1, 6:] = False
    with torch.no_grad():
        y = m(x, key_padding_mask=mask)[0]
        alone = m(seq)[0][0]
    assert rel_err(y[0, :30], alone) <= 1e-5 and rel_err(y[1, 6:], alone) <= 1e-5
    assert torch.all(y[0, 30:] == 0) and torch.all(y[1, :6] == 0)


def test_padded_module_errors():
    m = longnet_torch.MultiheadDilatedAttention(E, HEADS, [8], [1])
    x = torch.randn(2, 12, E)
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \[2, 11\] but must be \[B, N\] = \[2, 12\]"):
        m(x, key_padding_mask=torch.zeros(2, 11, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask has dtype torch.int64; it must be torch.bool"):
        m(x, key_padding_mask=torch.zeros(2, 12, dtype=torch.int64))


def test_decoder_left_padded_prompts():
    """LongNetDecoder(self_attn_padding_mask=...): a left-padded batch gives each row the logits of its
    tokens decoded alone (XPos positions and segments restart at the first real token)."""
    torch.manual_seed(5)
    model = longnet_torch.LongNetDecoder(vocab_size=50, embed_dim=E, num_heads=HEADS, ffn_dim=64, num_layers=2,
                                         segment_lengths=[8, 16], dilated_ratios=[1, 2], dtype=torch.float64)
    lengths = [20, 13, 1]
    N = max(lengths)
    tokens = torch.zeros(len(lengths), N, dtype=torch.int64)
    mask = torch.ones(len(lengths), N, dtype=torch.bool)
    rows = [torch.randint(1, 50, (n,)) for n in lengths]
    for b, r in enumerate(rows):
        tokens[b, N - len(r):] = r
        mask[b, N - len(r):] = False
    with torch.no_grad():
        logits = model(tokens, self_attn_padding_mask=mask)
        for b, r in enumerate(rows):
            alone = model(r[None])[0]
            assert rel_err(logits[b, N - len(r):], alone) <= 1e-12, b
