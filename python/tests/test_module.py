# SPDX-License-Identifier: Apache-2.0
"""MultiheadDilatedAttention and LongNetDecoder against the torchscale fixtures: the state dict of
torchscale's LongNetDecoder (decoder_00, train_00) loads with strict=True, the logits match (float64
<= 1e-10 against the all-float64 reference, float32 <= 1e-4 against torchscale's own run), and autograd
gives torchscale's gradients in both grad modes (train_00). Padded batches (issue 22 §4): with a
key_padding_mask (left and right padding, a hole, a fully padded row) every real row gets the result of its
sequence run unpadded, forward and gradients; pad rows are 0 with zero gradients and no NaN."""

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


# --- padded batches: key_padding_mask (issue 22 §4) ------------------------------------------------
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
