# SPDX-License-Identifier: Apache-2.0
"""MultiheadDilatedAttention and LongNetDecoder against the torchscale fixtures: the state dict of
torchscale's LongNetDecoder (decoder_00, train_00) loads with strict=True, the logits match (float64
<= 1e-10 against the all-float64 reference, float32 <= 1e-4 against torchscale's own run), and autograd
gives torchscale's gradients in both grad modes (train_00)."""

import pytest
import torch

import longnet_torch
from conftest import data_path, load_npy, load_params, load_safetensors, rel_err


def build_decoder(case, dtype, grad_mode="stop_grad_weights"):
    p = load_params(case)
    cfg = p["decoder_config_all_fields"]
    model = longnet_torch.LongNetDecoder(
        vocab_size=p["vocab_size"], embed_dim=p["embed_dim"], num_heads=p["heads"], ffn_dim=p["ffn_dim"],
        num_layers=p["layers"], segment_lengths=p["segment_length"], dilated_ratios=p["dilated_ratio"],
        layernorm_eps=cfg["layernorm_eps"], xpos_scale_base=cfg["xpos_scale_base"],
        attention_options={"grad_mode": grad_mode}, dtype=dtype)
    state = load_safetensors(data_path(case, "model.safetensors"))
    model.load_state_dict(state, strict=True)  # every name and shape is torchscale's
    return model


def test_module_parameter_names_and_shapes():
    m = longnet_torch.MultiheadDilatedAttention(64, 4, [16, 32], [1, 2])
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "q_proj.weight": (64, 64), "q_proj.bias": (64,), "k_proj.weight": (64, 64), "k_proj.bias": (64,),
        "v_proj.weight": (64, 64), "v_proj.bias": (64,), "out_proj.weight": (64, 64), "out_proj.bias": (64,),
        "inner_attn_ln.weight": (64,), "inner_attn_ln.bias": (64,), "xpos.scale": (8,)}
    ref = load_safetensors(data_path("decoder_00", "model.safetensors"))
    assert torch.equal(m.xpos.scale, ref["layers.0.self_attn.xpos.scale"])  # the deterministic buffer
    no_subln = longnet_torch.MultiheadDilatedAttention(64, 4, [16], [1], subln=False, xpos=False)
    assert "inner_attn_ln.weight" not in no_subln.state_dict() and "xpos.scale" not in no_subln.state_dict()


def test_module_errors():
    with pytest.raises(ValueError, match="not a multiple of num_heads"):
        longnet_torch.MultiheadDilatedAttention(60, 8, [16], [1])
    with pytest.raises(ValueError, match="unknown offsets"):
        longnet_torch.MultiheadDilatedAttention(64, 4, [16], [1], offsets="heads")
    m = longnet_torch.MultiheadDilatedAttention(64, 4, [16], [1])
    x = torch.randn(2, 20, 64)
    with pytest.raises(ValueError, match="attn_mask is not supported"):
        m(x, x, x, attn_mask=torch.zeros(20, 20))
    with pytest.raises(ValueError, match=r"query must be \[B, T, 64\]"):
        m(torch.randn(2, 20, 32))


@pytest.mark.parametrize("dtype,reference,tol", [
    (torch.float64, "logits_pure64.npy", 1e-10), (torch.float32, "logits.npy", 1e-4)], ids=["float64", "float32"])
def test_decoder_00_logits(dtype, reference, tol):
    model = build_decoder("decoder_00", dtype)
    tokens = load_npy("decoder_00", "tokens.npy")
    with torch.no_grad():
        logits, hidden = model(tokens[None], return_hidden=True)
    ref = load_npy("decoder_00", reference)
    assert logits.dtype == dtype
    err = (logits[0].double() - ref).abs().max().item()
    assert err <= tol, err
    if dtype == torch.float64:
        assert (hidden[0] - load_npy("decoder_00", "hidden_pure64.npy")).abs().max().item() <= 1e-10


def test_module_matches_dense_attention_when_one_segment_covers_everything():
    """One branch (w >= T, r = 1): the module is ordinary causal multi-head attention with XPos and Sub-LN."""
    torch.manual_seed(7)
    m = longnet_torch.MultiheadDilatedAttention(32, 4, [64], [1], dtype=torch.float64)
    x = torch.randn(2, 40, 32, dtype=torch.float64)
    got = m(x, is_causal=True)[0]
    B, T, C = x.shape
    q = m.xpos(m.q_proj(x).view(B, T, 4, 8))
    k = m.xpos(m.k_proj(x).view(B, T, 4, 8), downscale=True)
    v = m.v_proj(x).view(B, T, 4, 8)
    s = torch.einsum("bihd,bjhd->bhij", q, k) / 8 ** 0.5
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    a = torch.einsum("bhij,bjhd->bihd", s.softmax(-1), v).reshape(B, T, C)
    ref = m.out_proj(m.inner_attn_ln(a))
    assert (got - ref).abs().max().item() <= 1e-12


@pytest.mark.parametrize("grad_mode,reference", [
    ("exact", "grads_exact.safetensors"), ("stop_grad_weights", "grads_stop_grad.safetensors")])
def test_train_00_gradients(grad_mode, reference):
    model = build_decoder("train_00", torch.float64, grad_mode=grad_mode)
    tokens = load_npy("train_00", "tokens.npy")
    logits = model(tokens[None, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0], tokens[1:])
    assert abs(loss.item() - load_npy("train_00", "losses.npy")[0].item()) <= 1e-10
    loss.backward()
    ref = load_safetensors(data_path("train_00", reference))
    params = dict(model.named_parameters())
    assert set(ref) - {n for n in ref if n.endswith("xpos.scale")} == set(params)
    worst = max(rel_err(params[name].grad, ref[name]) for name in params)
    assert worst <= 1e-9, worst


# (float16 modules: torch 1.13's CPU nn.Linear has no Half matmul; the attention op itself is tested in
# float16 in test_api.py)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)], ids=["float32", "bfloat16"])
def test_module_dtypes_and_parameter_gradients(dtype, tol):
    """The module in a narrow dtype agrees with its float64 copy; every parameter gets a finite gradient."""
    torch.manual_seed(11)
    ref = longnet_torch.MultiheadDilatedAttention(64, 4, [16, 32], [1, 2], dtype=torch.float64)
    m = longnet_torch.MultiheadDilatedAttention(64, 4, [16, 32], [1, 2], dtype=dtype)
    m.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    x = torch.randn(2, 50, 64, dtype=torch.float64)
    want = ref(x)[0]
    got = m(x.to(dtype))[0]
    assert got.dtype == dtype
    assert rel_err(got, want) <= tol
    got.float().pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.dtype == dtype and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name
