# SPDX-License-Identifier: Apache-2.0
"""longnet_torch.dilated_attention on random inputs against the float64 oracle: every dtype, strided views
read in place, the options, gradcheck in float64, and the errors (ValueError / TypeError, never a crash)."""

import math

import pytest
import torch

import longnet_torch
from longnet_torch import _C
from conftest import lse_err, oracle, rel_err

BRANCHES = ([8, 16, 32], [1, 2, 4])


def rand(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=torch.float64).to(dtype)


# --- dtypes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol_out,tol_grad", [
    (torch.float64, 1e-12, 1e-11), (torch.float32, 2e-5, 1e-4),
    (torch.bfloat16, 2e-2, 5e-2), (torch.float16, 3e-3, 1e-2)], ids=["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dtypes_against_oracle(dtype, tol_out, tol_grad, causal):
    B, N, H, D = 2, 70, 3, 16
    q, k, v, dout = (rand(B, N, H, D, dtype=dtype) for _ in range(4))
    qr, kr, vr = (t.detach().double().clone().requires_grad_() for t in (q, k, v))
    ref_out, ref_lse = oracle(qr, kr, vr, *BRANCHES, causal=causal)
    (ref_out * dout.double()).sum().backward()
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out, lse = longnet_torch.dilated_attention(q, k, v, *BRANCHES, causal=causal, return_lse=True)
    assert out.dtype == dtype and lse.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert rel_err(out, ref_out) <= tol_out
    assert lse_err(lse, ref_lse) <= tol_out * 10
    (out * dout).sum().backward()
    for got, ref in ((q, qr), (k, kr), (v, vr)):
        assert got.grad.dtype == dtype
        assert rel_err(got.grad, ref.grad) <= tol_grad


# --- options ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("offsets", ["paper", "torchscale"])
@pytest.mark.parametrize("tail", ["exact", "zero_pad"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_options_against_oracle(offsets, tail, causal):
    q, k, v = (rand(1, 75, 6, 8) for _ in range(3))
    segs, dils = [10, 40, 150], [1, 3, 5]
    out, lse = longnet_torch.dilated_attention(q, k, v, segs, dils, causal=causal, offsets=offsets, tail=tail,
                                               return_lse=True)
    ref_out, ref_lse = oracle(q, k, v, segs, dils, causal, offsets, tail)
    assert rel_err(out, ref_out) <= 1e-12
    assert lse_err(lse, ref_lse) <= 1e-12


def test_scale():
    q, k, v = (rand(1, 40, 2, 8) for _ in range(3))
    out = longnet_torch.dilated_attention(q, k, v, [16], [2], scale=0.7)
    assert rel_err(out, oracle(q, k, v, [16], [2], scale=0.7)[0]) <= 1e-12
    assert rel_err(out, oracle(q, k, v, [16], [2])[0]) > 1e-3


def test_uncovered_rows_are_zero_with_zero_gradients():
    # H = 1 < r = 2: odd rows have no head; they get out 0, lse -inf, zero gradients, no NaN
    q, k, v = (rand(1, 32, 1, 8).requires_grad_() for _ in range(3))
    out, lse = longnet_torch.dilated_attention(q, k, v, [16], [2], return_lse=True)
    assert torch.all(out[:, 1::2] == 0) and torch.all(torch.isneginf(lse[:, 1::2]))
    assert torch.isfinite(lse[:, 0::2]).all()
    (out.sum() + lse[:, 0::2].sum()).backward()
    assert torch.isfinite(q.grad).all() and torch.all(q.grad[:, 1::2] == 0) and torch.all(k.grad[:, 1::2] == 0)


# --- strides ---------------------------------------------------------------------------------------------
def test_bhnd_views_and_slices_are_read_in_place():
    B, N, H, D = 2, 50, 4, 16
    buf = [rand(B, H, N, D) for _ in range(3)]  # PyTorch's usual [B, H, N, D] buffers
    q, k, v = (t.transpose(1, 2) for t in buf)   # [B, N, H, D] views, not contiguous
    assert not q.is_contiguous()
    wide = rand(B, N, 2 * H, D)
    v2 = wide[:, :, ::2]                          # every other head of a wider tensor
    copies = _C.input_copies()
    out = longnet_torch.dilated_attention(q, k, v2, *BRANCHES, causal=True)
    assert _C.input_copies() == copies, "a view with a contiguous head dim must not be copied"
    ref = oracle(q.contiguous(), k.contiguous(), v2.contiguous(), *BRANCHES, causal=True)[0]
    assert rel_err(out, ref) <= 1e-12
    assert out.is_contiguous()


def test_non_contiguous_head_dim_is_copied_and_correct():
    q = rand(1, 30, 2, 8)
    k_t = rand(1, 30, 8, 2).transpose(2, 3)  # head dim stride 2
    v = rand(1, 30, 2, 8)
    copies = _C.input_copies()
    out = longnet_torch.dilated_attention(q, k_t, v, [10], [1])
    assert _C.input_copies() == copies + 1
    assert rel_err(out, oracle(q, k_t.contiguous(), v, [10], [1])[0]) <= 1e-12


def test_expanded_inputs_and_gradients_through_views():
    base = rand(1, 40, 1, 8)
    k = base.expand(3, 40, 2, 8)  # stride 0 over batch and heads
    q = rand(3, 40, 2, 8)
    v = rand(3, 40, 2, 8)
    out = longnet_torch.dilated_attention(q, k, v, [8, 20], [1, 2])
    assert rel_err(out, oracle(q, k.contiguous(), v, [8, 20], [1, 2])[0]) <= 1e-12
    # gradients flow back into a [B, H, N, D] leaf through the transpose
    leaf = rand(2, 3, 24, 8).requires_grad_()
    x = leaf.transpose(1, 2)
    longnet_torch.dilated_attention(x, x, x, [8], [2], causal=True).pow(2).sum().backward()
    ref_leaf = leaf.detach().clone().requires_grad_()
    y = ref_leaf.transpose(1, 2)
    oracle(y, y, y, [8], [2], causal=True)[0].pow(2).sum().backward()
    assert rel_err(leaf.grad, ref_leaf.grad) <= 1e-11


# --- gradcheck -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal,offsets,tail,grad_mode", [
    (False, "paper", "exact", "exact"),
    (True, "torchscale", "exact", "exact"),
    (False, "torchscale", "zero_pad", "exact"),
    (True, "paper", "exact", "stop_grad_weights"),
])
def test_gradcheck_float64(causal, offsets, tail, grad_mode):
    q, k, v = (rand(1, 21, 3, 4).requires_grad_() for _ in range(3))
    segs, dils = [4, 9, 21], [1, 2, 3]

    def f(q, k, v):
        return longnet_torch.dilated_attention(q, k, v, segs, dils, causal=causal, offsets=offsets, tail=tail,
                                               grad_mode=grad_mode, return_lse=True)

    if grad_mode == "exact":
        assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7)
    else:
        # stop_grad_weights is not the derivative of the output (by design); its lse gradient still is
        def lse_only(q, k, v):
            return f(q, k, v)[1]
        assert torch.autograd.gradcheck(lse_only, (q, k, v), eps=1e-6, atol=1e-7)


def test_lse_gradient_against_oracle():
    q, k, v = (rand(2, 33, 2, 8).requires_grad_() for _ in range(3))
    w = rand(2, 33, 2)
    out, lse = longnet_torch.dilated_attention(q, k, v, [8, 16], [1, 2], tail="zero_pad", return_lse=True)
    (out.sum() + (lse * w).sum()).backward()
    qr, kr, vr = (t.detach().clone().requires_grad_() for t in (q, k, v))
    ro, rl = oracle(qr, kr, vr, [8, 16], [1, 2], tail="zero_pad")
    (ro.sum() + (rl * w).sum()).backward()
    for a, b in ((q, qr), (k, kr), (v, vr)):
        assert rel_err(a.grad, b.grad) <= 1e-11


def test_double_backward_is_refused():
    q, k, v = (rand(1, 16, 1, 4).requires_grad_() for _ in range(3))
    out = longnet_torch.dilated_attention(q, k, v, [8], [1])
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(out.sum(), q, create_graph=True)


def test_deterministic_and_thread_count_independent():
    q, k, v = (rand(1, 300, 2, 32, dtype=torch.float32) for _ in range(3))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = longnet_torch.dilated_attention(q, k, v, [64, 128], [1, 2])
        torch.set_num_threads(2)
        two = longnet_torch.dilated_attention(q, k, v, [64, 128], [1, 2])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_empty_sequence():
    q = torch.empty(1, 0, 2, 8)
    out, lse = longnet_torch.dilated_attention(q, q, q, [4], [1], return_lse=True)
    assert out.shape == (1, 0, 2, 8) and lse.shape == (1, 0, 2)


# --- errors ----------------------------------------------------------------------------------------------
def good():
    return [rand(1, 16, 2, 8, dtype=torch.float32) for _ in range(3)]


@pytest.mark.parametrize("change,exc,match", [
    (lambda a: a.update(q=a["q"].numpy()), TypeError, "q must be a torch.Tensor"),
    (lambda a: a.update(k=a["k"].double()), TypeError, "k has dtype torch.float64 but q has dtype torch.float32"),
    (lambda a: a.update(q=a["q"].int(), k=a["k"].int(), v=a["v"].int()), TypeError, "torch.int32"),
    (lambda a: a.update(v=a["v"][:, :8]), ValueError, r"v has shape \[1, 8, 2, 8\] but q has shape \[1, 16, 2, 8\]"),
    (lambda a: a.update(q=a["q"][0], k=a["k"][0], v=a["v"][0]), ValueError, "4 dims"),
    (lambda a: a.update(q=a["q"].to("meta")), ValueError, "device meta"),
    (lambda a: a.update(segment_lengths=[]), ValueError, "at least one branch"),
    (lambda a: a.update(segment_lengths=[8, 16]), ValueError, "2 segment_lengths but 1 dilated_ratios"),
    (lambda a: a.update(segment_lengths=[0]), ValueError, r"segment_lengths\[0\] must be >= 1, got 0"),
    (lambda a: a.update(dilated_ratios=[-2]), ValueError, r"dilated_ratios\[0\] must be >= 1, got -2"),
    (lambda a: a.update(segment_lengths=[8.5]), TypeError, r"segment_lengths\[0\] must be an int"),
    (lambda a: a.update(segment_lengths=8), TypeError, "segment_lengths must be a sequence of ints"),
    (lambda a: a.update(offsets="dense"), ValueError, "unknown offsets 'dense'"),
    (lambda a: a.update(tail="pad"), ValueError, "unknown tail 'pad'"),
    (lambda a: a.update(grad_mode="approx"), ValueError, "unknown grad_mode 'approx'"),
    (lambda a: a.update(offsets=1), TypeError, "offsets must be a string"),
    (lambda a: a.update(scale=float("nan")), ValueError, "scale must be a finite number"),
    (lambda a: a.update(scale="0.5"), TypeError, "scale must be a float"),
    (lambda a: a.update(causal="yes"), TypeError, "causal must be a bool"),
])
def test_errors(change, exc, match):
    q, k, v = good()
    args = dict(q=q, k=k, v=v, segment_lengths=[8], dilated_ratios=[2])
    change(args)
    with pytest.raises(exc, match=match):
        longnet_torch.dilated_attention(**args)


def test_extension_checks_too():
    """The C++ entry points check on their own: no crash when the Python checks are bypassed."""
    q, k, v = good()
    with pytest.raises(TypeError, match="dtype"):
        _C.dilated_attention(q, k.double(), v, [8], [2], False, "paper", "exact", None, "exact")
    with pytest.raises(ValueError, match="shape"):
        _C.dilated_attention(q, k[:, :4], v, [8], [2], False, "paper", "exact", None, "exact")
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        _C.dilated_attention(q, k, v, [8], [0], False, "paper", "exact", None, "exact")
    with pytest.raises(ValueError, match="unknown tail mode 'x'"):
        _C.forward(q, k, v, [8], [1], False, "paper", "x", None)
    with pytest.raises(ValueError, match="unknown grad mode 'y'"):
        _C.dilated_attention(q, k, v, [8], [1], False, "paper", "exact", None, "y")
    with pytest.raises(ValueError, match="scale must be a finite number"):
        _C.forward(q, k, v, [8], [1], False, "paper", "exact", math.inf)
    with pytest.raises(ValueError, match="lse must be"):
        _C.backward(q, k, v, q, torch.zeros(1, 16), q, [8], [1], False, "paper", "exact", None, "exact")
