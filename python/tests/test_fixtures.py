# SPDX-License-Identifier: Apache-2.0
"""Every attention fixture (tests/data, from the float64 reference and torchscale's own DilatedAttention)
through longnet_torch.dilated_attention: forward (out, lse) and backward (dq, dk, dv by autograd), in
float64 (1e-10) and float32 (2e-5 forward, 1e-4 gradients, relative to the largest value)."""

import pytest
import torch

import longnet_torch
from conftest import load_npy, load_params, lse_err, oracle, rel_err

FORWARD_CASES = [f"attn_fwd_0{i}" for i in range(6)]
BACKWARD_CASES = [f"attn_bwd_0{i}" for i in range(5)]
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-5, 1e-4)}


def options(params):
    return dict(segment_lengths=params["segments"], dilated_ratios=params["dilations"], causal=params["causal"],
                offsets=params["offsets"], tail=params["tail_mode"])


def inputs(case, names, dtype, requires_grad=False):
    # fixtures are [N, H, D]; the op takes [B, N, H, D]
    return [load_npy(case, f"{n}.npy").to(dtype)[None].requires_grad_(requires_grad) for n in names]


def test_fixture_cases_are_present():
    assert len(FORWARD_CASES) == 6 and len(BACKWARD_CASES) == 5
    for case in FORWARD_CASES + BACKWARD_CASES:
        assert load_params(case)["segments"], case


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", FORWARD_CASES + BACKWARD_CASES)
def test_forward(case, dtype):
    params = load_params(case)
    q, k, v = inputs(case, "qkv", dtype)
    out, lse = longnet_torch.dilated_attention(q, k, v, **options(params), return_lse=True)
    assert out.dtype == dtype and out.shape == q.shape
    assert lse.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    tol = TOL[dtype][0]
    assert rel_err(out[0], load_npy(case, "out.npy")) <= tol
    assert lse_err(lse[0], load_npy(case, "lse.npy")) <= tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", BACKWARD_CASES)
def test_backward(case, dtype):
    params = load_params(case)
    q, k, v = inputs(case, "qkv", dtype, requires_grad=True)
    (dout,) = inputs(case, ["dout"], dtype)
    out = longnet_torch.dilated_attention(q, k, v, **options(params), grad_mode=params["backward_mode"])
    (out * dout).sum().backward()
    tol = TOL[dtype][1]
    for name, t in (("dq", q), ("dk", k), ("dv", v)):
        ref = load_npy(case, f"{name}.npy")
        assert t.grad.dtype == dtype
        assert rel_err(t.grad[0], ref) <= tol, name


@pytest.mark.parametrize("case", FORWARD_CASES + ["attn_bwd_00", "attn_bwd_02"])
def test_oracle_agrees_with_fixtures(case):
    """The tests' own float64 oracle (used for random inputs elsewhere) reproduces the fixtures."""
    params = load_params(case)
    q, k, v = inputs(case, "qkv", torch.float64)
    o = options(params)
    out, lse = oracle(q, k, v, o["segment_lengths"], o["dilated_ratios"], o["causal"], o["offsets"], o["tail"])
    assert rel_err(out[0], load_npy(case, "out.npy")) <= 1e-12
    assert lse_err(lse[0], load_npy(case, "lse.npy")) <= 1e-12


def test_stop_grad_weights_differs_from_exact():
    """The two grad modes are different functions on a multi-branch case (the fixtures pick one each)."""
    case = "attn_bwd_03"
    params = load_params(case)
    grads = []
    for mode in ("exact", "stop_grad_weights"):
        q, k, v = inputs(case, "qkv", torch.float64, requires_grad=True)
        (dout,) = inputs(case, ["dout"], torch.float64)
        (longnet_torch.dilated_attention(q, k, v, **options(params), grad_mode=mode) * dout).sum().backward()
        grads.append(q.grad)
    assert rel_err(grads[0], grads[1]) > 1e-3
