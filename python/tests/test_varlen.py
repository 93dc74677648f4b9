# SPDX-License-Identifier: Apache-2.0
"""Variable-length batches in longnet_torch (issue 22 §4): dilated_attention_varlen on packed [total, H, D]
tensors equals the per-sequence dilated_attention calls (forward, lse and gradients; float64 and float32),
agrees with the float64 oracle, passes gradcheck; dilated_attention with a key_padding_mask equals each
batch row's real tokens run alone, with zeros (and zero gradients) on the pads; bad cu_seqlens and bad
masks raise ValueError / TypeError with longnet's message."""

import pytest
import torch

import longnet_torch
from conftest import lse_err, oracle, rel_err

BRANCHES = ([8, 16, 32], [1, 2, 4])
H, D = 3, 8


def rand(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=torch.float64).to(dtype)


def leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


def lengths_with_edge_cases(seed):
    """Random short lengths with 0 and 1 among them and one long sequence (longer than every segment)."""
    g = torch.Generator().manual_seed(seed)
    short = torch.randint(0, 12, (7,), generator=g).tolist()
    lengths = short[:3] + [0, 97, 1] + short[3:] + [0]
    return lengths


def cu_of(lengths, dtype=torch.int64):
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return torch.tensor(cu, dtype=dtype)


# --- packed sequences ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("cu_dtype", [torch.int32, torch.int64], ids=["int32", "int64"])
def test_varlen_equals_per_sequence_calls(dtype, causal, cu_dtype):
    lengths = lengths_with_edge_cases(5 + causal)
    cu = cu_of(lengths, cu_dtype)
    total = int(cu[-1])
    q, k, v = leaves(*(rand(total, H, D, dtype=dtype) for _ in range(3)))
    dout, dlse = rand(total, H, D, dtype=dtype), rand(total, H, dtype=dtype)
    out, lse = longnet_torch.dilated_attention_varlen(q, k, v, cu, *BRANCHES, causal=causal, return_lse=True)
    assert out.shape == (total, H, D) and out.dtype == dtype and lse.shape == (total, H)
    ((out * dout).sum() + (lse * dlse.to(lse.dtype)).sum()).backward()

    # the definition: each sequence alone through dilated_attention ([1, n, H, D]), same gradients
    qs, ks, vs = leaves(q, k, v)
    for b, n in enumerate(lengths):
        s = int(cu[b])
        if n == 0:
            continue
        o, l = longnet_torch.dilated_attention(qs[None, s:s + n], ks[None, s:s + n], vs[None, s:s + n], *BRANCHES,
                                               causal=causal, return_lse=True)
        assert torch.equal(out[s:s + n], o[0]), b
        assert torch.equal(lse[s:s + n], l[0]), b
        ((o[0] * dout[s:s + n]).sum() + (l[0] * dlse[s:s + n].to(l.dtype)).sum()).backward()
    for got, want in ((q, qs), (k, ks), (v, vs)):
        assert torch.isfinite(got.grad).all()
        assert torch.equal(got.grad, want.grad)


def test_varlen_against_the_oracle_and_list_offsets():
    """Independently of the op: the float64 oracle on each sequence; cu_seqlens as a Python list."""
    lengths = [5, 0, 41, 1, 17]
    cu = cu_of(lengths).tolist()
    q, k, v = leaves(*(rand(cu[-1], H, D) for _ in range(3)))
    out, lse = longnet_torch.dilated_attention_varlen(q, k, v, cu, *BRANCHES, tail="zero_pad", offsets="torchscale",
                                                      return_lse=True)
    out.pow(2).sum().backward()
    qr, kr, vr = leaves(q, k, v)
    for b, n in enumerate(lengths):
        s = cu[b]
        if n == 0:
            continue
        ref_out, ref_lse = oracle(qr[None, s:s + n], kr[None, s:s + n], vr[None, s:s + n], *BRANCHES,
                                  tail="zero_pad", offsets="torchscale")
        assert rel_err(out[s:s + n], ref_out[0]) <= 1e-12
        assert lse_err(lse[s:s + n], ref_lse[0]) <= 1e-12
        ref_out[0].pow(2).sum().backward()
    for got, ref in ((q, qr), (k, kr), (v, vr)):
        assert rel_err(got.grad, ref.grad) <= 1e-10


def test_varlen_stop_grad_weights_mode():
    lengths = [9, 0, 33]
    cu = cu_of(lengths)
    q, k, v = leaves(*(rand(42, H, D) for _ in range(3)))
    out = longnet_torch.dilated_attention_varlen(q, k, v, cu, *BRANCHES, grad_mode="stop_grad_weights")
    out.sum().backward()
    qs, ks, vs = leaves(q, k, v)
    for s, n in ((0, 9), (9, 33)):
        longnet_torch.dilated_attention(qs[None, s:s + n], ks[None, s:s + n], vs[None, s:s + n], *BRANCHES,
                                        grad_mode="stop_grad_weights").sum().backward()
    for got, want in ((q, qs), (k, ks), (v, vs)):
        assert torch.equal(got.grad, want.grad)


def test_varlen_gradcheck():
    cu = cu_of([3, 0, 6, 1])
    q, k, v = (rand(10, 2, 4).requires_grad_() for _ in range(3))

    def f(q, k, v):
        return longnet_torch.dilated_attention_varlen(q, k, v, cu, [2, 4], [1, 2], return_lse=True)

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_varlen_empty_total():
    q = rand(0, H, D)
    out, lse = longnet_torch.dilated_attention_varlen(q, q, q, torch.tensor([0, 0, 0]), [4], [1], return_lse=True)
    assert out.shape == (0, H, D) and lse.shape == (0, H)


@pytest.mark.parametrize("cu,message", [
    ([0, 5, 3, 12], r"cu_seqlens\[2\] = 3 is less than cu_seqlens\[1\] = 5"),
    ([1, 5, 12], r"cu_seqlens\[0\] = 1 must be 0"),
    ([0, 5, 11], r"cu_seqlens\[2\] = 11 but the packed tensors hold 12 tokens"),
    ([0, -1, 12], r"cu_seqlens\[1\] = -1 is negative"),
    ([0, 13, 12], r"cu_seqlens\[1\] = 13 is past the total token count 12"),
    ([], r"cu_seqlens is empty"),
])
@pytest.mark.parametrize("cu_dtype", [torch.int32, torch.int64], ids=["int32", "int64"])
def test_varlen_bad_cu_seqlens(cu, message, cu_dtype):
    q = rand(12, H, D)
    with pytest.raises(ValueError, match=message):
        longnet_torch.dilated_attention_varlen(q, q, q, torch.tensor(cu, dtype=cu_dtype), [4], [1])
    with pytest.raises(ValueError, match=message):  # the raw binding checks too
        longnet_torch._C.dilated_attention_varlen(q, q, q, torch.tensor(cu, dtype=cu_dtype), [4], [1], False,
                                                  "paper", "exact", None, "exact")


def test_varlen_bad_arguments():
    q = rand(12, H, D)
    cu = torch.tensor([0, 12])
    with pytest.raises(TypeError, match="cu_seqlens has dtype torch.float32"):
        longnet_torch.dilated_attention_varlen(q, q, q, cu.float(), [4], [1])
    with pytest.raises(TypeError, match=r"cu_seqlens\[1\] must be an int"):
        longnet_torch.dilated_attention_varlen(q, q, q, [0, 12.0], [4], [1])
    with pytest.raises(ValueError, match="cu_seqlens must be a 1-D CPU tensor"):
        longnet_torch.dilated_attention_varlen(q, q, q, cu[None], [4], [1])
    with pytest.raises(ValueError, match=r"q must have 3 dims \[total_tokens, H, D\]"):
        longnet_torch.dilated_attention_varlen(q[None], q[None], q[None], cu, [4], [1])
    with pytest.raises(ValueError, match=r"k has shape \[11, 3, 8\] but q has shape \[12, 3, 8\]"):
        longnet_torch.dilated_attention_varlen(q, q[1:], q, cu, [4], [1])
    with pytest.raises(ValueError, match="unknown tail"):
        longnet_torch.dilated_attention_varlen(q, q, q, cu, [4], [1], tail="wrap")


# --- padded batches --------------------------------------------------------------------------------------
def padding_mask(N):
    """Right, left, both-sided, a hole, fully padded, unpadded, a single real token: [7, N] bool."""
    m = torch.zeros(7, N, dtype=torch.bool)
    m[0, N - 9:] = True          # right
    m[1, :13] = True             # left
    m[2, :4] = True
    m[2, N - 6:] = True          # both sides
    m[3, 10:15] = True           # a hole
    m[4, :] = True               # all pad
    m[6, :] = True
    m[6, 20] = False             # one real token
    return m


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_padded_equals_each_row_alone(dtype, causal):
    N = 45
    mask = padding_mask(N)
    B = mask.shape[0]
    q, k, v = (rand(B, N, H, D, dtype=dtype) for _ in range(3))
    for t in (q, k, v):
        t[mask] = float("nan")  # pads are never read
    q, k, v = leaves(q, k, v)
    dout = rand(B, N, H, D, dtype=dtype)
    out, lse = longnet_torch.dilated_attention(q, k, v, *BRANCHES, causal=causal, return_lse=True,
                                               key_padding_mask=mask)
    (out * dout).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    pads = mask
    assert torch.all(out[pads] == 0) and torch.all(torch.isneginf(lse[pads]))
    for g in (q.grad, k.grad, v.grad):
        assert torch.all(g[pads] == 0)
    for b in range(B):
        real = (~mask[b]).nonzero().flatten()
        if real.numel() == 0:
            continue
        qb, kb, vb = leaves(q[b, real][None], k[b, real][None], v[b, real][None])
        o, l = longnet_torch.dilated_attention(qb, kb, vb, *BRANCHES, causal=causal, return_lse=True)
        assert torch.equal(out[b, real], o[0]), b
        assert torch.equal(lse[b, real], l[0]), b
        (o[0] * dout[b, real]).sum().backward()
        for got, want in ((q, qb), (k, kb), (v, vb)):
            assert torch.equal(got.grad[b, real], want.grad[0]), b


def test_padded_gradcheck_with_lse():
    mask = torch.tensor([[True, False, False, False, False, True], [False, False, True, False, True, True]])
    q, k, v = (rand(2, 6, 2, 4).requires_grad_() for _ in range(3))

    def f(q, k, v):
        out, lse = longnet_torch.dilated_attention(q, k, v, [2, 4], [1, 2], return_lse=True, key_padding_mask=mask)
        return out, lse.masked_fill(mask[..., None], 0.0)  # pads' lse is -inf

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_padded_bad_masks():
    q = rand(2, 10, H, D)
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \[2, 9\] but must be \[B, N\] = \[2, 10\]"):
        longnet_torch.dilated_attention(q, q, q, [4], [1], key_padding_mask=torch.zeros(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \[10\]"):
        longnet_torch.dilated_attention(q, q, q, [4], [1], key_padding_mask=torch.zeros(10, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask has dtype torch.uint8; it must be torch.bool"):
        longnet_torch.dilated_attention(q, q, q, [4], [1], key_padding_mask=torch.zeros(2, 10, dtype=torch.uint8))
    with pytest.raises(TypeError, match="key_padding_mask must be a torch.Tensor"):
        longnet_torch.dilated_attention(q, q, q, [4], [1], key_padding_mask=[[False] * 10] * 2)
    # the raw binding checks the same
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \[3, 10\]"):
        longnet_torch._C.dilated_attention(q, q, q, [4], [1], False, "paper", "exact", None, "exact",
                                           torch.zeros(3, 10, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask has dtype Float"):
        longnet_torch._C.dilated_attention(q, q, q, [4], [1], False, "paper", "exact", None, "exact",
                                           torch.zeros(2, 10))
