# SPDX-License-Identifier: Apache-2.0
"""The ``lengths`` argument (per-row lengths, right padding) beside every key_padding_mask of the public
torch API: dilated_attention, MultiheadDilatedAttention, LongNetDecoder and the decoder and encoder layers
(LongNetEncoder: test_encoder.py).
It equals the mask ``arange(N) >= lengths[:, None]`` bitwise, forward and gradients (int32, int64 and a
list of ints; 0 and N included); bad lengths get errors naming the value."""

import pytest
import torch

import longnet_torch

N = 14
LENGTHS = [14, 9, 0, 1]


def mask_of(lengths):
    return torch.arange(N)[None, :] >= torch.tensor(lengths)[:, None]


def forms(lengths):
    return [torch.tensor(lengths, dtype=torch.int64), torch.tensor(lengths, dtype=torch.int32), list(lengths)]


def run(f, x, **padding):
    x = x.clone().requires_grad_()
    y = f(x, **padding)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad


def assert_lengths_equal_mask(f, x):
    want_y, want_g = run(f, x, key_padding_mask=mask_of(LENGTHS))
    assert want_y.abs().max() > 0 and torch.all(want_y[mask_of(LENGTHS)] == 0)
    for lengths in forms(LENGTHS):
        y, g = run(f, x, lengths=lengths)
        assert torch.equal(y, want_y) and torch.equal(g, want_g), type(lengths)


def test_functional():
    q = torch.randn(4, N, 2, 8, dtype=torch.float64)
    k, v = torch.randn_like(q), torch.randn_like(q)
    assert_lengths_equal_mask(lambda x, **p: longnet_torch.dilated_attention(x, k, v, [4, 8], [1, 2], **p), q)


def test_module():
    m = longnet_torch.MultiheadDilatedAttention(16, 2, [4, 8], [1, 2], dtype=torch.float64)
    x = torch.randn(4, N, 16, dtype=torch.float64)
    assert_lengths_equal_mask(lambda x, **p: m(x, **p)[0], x)


def test_decoder():
    model = longnet_torch.LongNetDecoder(vocab_size=30, embed_dim=16, num_heads=2, ffn_dim=32, num_layers=1,
                                         segment_lengths=[4, 8], dilated_ratios=[1, 2], dtype=torch.float64)
    tokens = torch.randint(0, 30, (4, N))
    want = model(tokens, self_attn_padding_mask=mask_of(LENGTHS))
    for lengths in forms(LENGTHS):
        assert torch.equal(model(tokens, lengths=lengths), want)
    with pytest.raises(ValueError, match=r"lengths\[0\] = -1 is outside 0..N = 0..14"):
        model(tokens, lengths=torch.tensor([-1, 2, 3, 4]))
    with pytest.raises(ValueError, match="key_padding_mask or lengths, not both"):
        model(tokens, self_attn_padding_mask=mask_of(LENGTHS), lengths=LENGTHS)


def test_layers():
    dec = longnet_torch.LongNetDecoderLayer(16, 2, 32, [4, 8], [1, 2], factory={"dtype": torch.float64})
    enc = longnet_torch.LongNetEncoderLayer(16, 2, 32, [4, 8], [1, 2], factory={"dtype": torch.float64})
    x = torch.randn(4, N, 16, dtype=torch.float64)
    for layer, mask_name in ((dec, "self_attn_padding_mask"), (enc, "encoder_padding_mask")):
        want_y, want_g = run(layer, x, **{mask_name: mask_of(LENGTHS)})
        y, g = run(layer, x, lengths=torch.tensor(LENGTHS))
        assert torch.equal(y, want_y) and torch.equal(g, want_g), mask_name


@pytest.mark.parametrize("lengths,exc,match", [
    (torch.tensor([14, -2, 3, 4]), ValueError, r"lengths\[1\] = -2 is outside 0..N = 0..14"),
    (torch.tensor([14, 2, 15, 4]), ValueError, r"lengths\[2\] = 15 is outside 0..N = 0..14"),
    ([1, 2, 3, 99], ValueError, r"lengths\[3\] = 99 is outside 0..N = 0..14"),
    (torch.tensor([1, 2, 3]), ValueError, r"lengths has shape \[3\] but must be \[B\] = \[4\]"),
    (torch.tensor([[1, 2, 3, 4]]), ValueError, r"lengths has shape \[1, 4\] but must be \[B\] = \[4\]"),
    ([1, 2, 3], ValueError, "lengths has 3 entries but the batch has B = 4 rows"),
    (torch.tensor([1.0, 2, 3, 4]), TypeError, "lengths has dtype torch.float32; it must be int32 or int64"),
    (torch.tensor([True, False, True, True]), TypeError, "lengths has dtype torch.bool"),
    ([1, 2.5, 3, 4], TypeError, r"lengths\[1\] must be an int, got float 2.5"),
    (7, TypeError, "lengths must be an int32/int64 tensor"),
])
def test_bad_lengths(lengths, exc, match):
    q = torch.randn(4, N, 2, 8)
    with pytest.raises(exc, match=match):
        longnet_torch.dilated_attention(q, q, q, [4], [1], lengths=lengths)
    m = longnet_torch.MultiheadDilatedAttention(16, 2, [4], [1])
    with pytest.raises(exc, match=match):
        m(torch.randn(4, N, 16), lengths=lengths)


def test_lengths_and_mask_together_refused():
    q = torch.randn(4, N, 2, 8)
    with pytest.raises(ValueError, match="key_padding_mask or lengths, not both"):
        longnet_torch.dilated_attention(q, q, q, [4], [1], key_padding_mask=mask_of(LENGTHS), lengths=LENGTHS)
