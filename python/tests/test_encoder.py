# SPDX-License-Identifier: Apache-2.0
"""LongNetEncoder against the torchscale encoder fixtures of tests/test_encoder.cpp (encoder_00: pre-LN
Sub-LN; encoder_01: + layernorm_embedding and sqrt(E) embedding scale; encoder_02: post-LN): built from
the fixture's EncoderConfig fields, torchscale's state dict loads with strict=True, and a right-padded
batch (mask or lengths) gives the float64 references to 1e-9 (output and every hidden state), pad rows 0,
no NaN. Random padded batches (left, holes, an empty row) equal each row encoded alone, forward and
gradients; gradcheck of a tiny encoder in float64; the config reader's refusals."""

import json

import pytest
import torch
from torch.nn.utils import stateless

import longnet_torch
from conftest import data_path, load_npy, load_params, load_safetensors, rel_err

CASES = ["encoder_00", "encoder_01", "encoder_02"]


def build(case, dtype):
    model = longnet_torch.LongNetEncoder.from_config(load_params(case)["config"], dtype=dtype)
    model.load_state_dict(load_safetensors(data_path(case, "model.safetensors")), strict=True)
    return model


def fixture_batch(case, dtype):
    x = load_npy(case, "embeddings.npy").to(dtype)
    mask = load_npy(case, "padding_mask.npy") != 0
    return x, mask


@pytest.mark.parametrize("padding", ["mask", "lengths"])
@pytest.mark.parametrize("case", CASES)
def test_fixture_float64(case, padding):
    model = build(case, torch.float64)
    x, mask = fixture_batch(case, torch.float64)
    assert mask.any() and not mask[0].any()  # row 1 is right-padded
    x = x.masked_fill(mask[..., None], float("nan"))  # what the pads hold must not matter
    if padding == "mask":
        arg = {"key_padding_mask": mask}
    else:
        arg = {"lengths": (~mask).sum(dim=1).to(torch.int32)}
    with torch.no_grad():
        out, states = model(x, return_all_hiddens=True, **arg)
    ref = load_npy(case, "encoder_out_pure64.npy")
    assert torch.isfinite(out).all() and torch.all(out[mask] == 0)
    assert (out - ref).abs().max().item() <= 1e-9
    ref_states = load_npy(case, "encoder_states_pure64.npy")
    assert len(states) == ref_states.shape[0]
    for s, r in zip(states, ref_states):
        assert (s - r).abs().max().item() <= 1e-9


@pytest.mark.parametrize("case", CASES)
def test_fixture_float32_against_torchscale_as_written(case):
    """float32 (GELU in float32 as torchscale evaluates it) against torchscale's own float64 run."""
    model = build(case, torch.float32)
    x, mask = fixture_batch(case, torch.float32)
    with torch.no_grad():
        out = model(x, key_padding_mask=mask)
    assert out.dtype == torch.float32
    assert rel_err(out, load_npy(case, "encoder_out.npy")) <= 1e-5


def test_state_dict_names_are_torchscales():
    for case in CASES:
        keys = set(longnet_torch.LongNetEncoder.from_config(load_params(case)["config"]).state_dict())
        assert keys == set(load_safetensors(data_path(case, "model.safetensors"))), case
    keys = set(longnet_torch.LongNetEncoder.from_config(load_params("encoder_01")["config"]).state_dict())
    assert {"layernorm_embedding.weight", "layer_norm.weight", "layers.1.self_attn.inner_attn_ln.bias",
            "layers.0.ffn.ffn_layernorm.weight"} <= keys


def random_encoder(E=16, heads=2, ffn=32, layers=2, segments=(4, 8), dilations=(1, 2), grad_mode="exact", **kw):
    model = longnet_torch.LongNetEncoder(E, heads, ffn, layers, list(segments), list(dilations),
                                         attention_options={"grad_mode": grad_mode}, dtype=torch.float64, **kw)
    with torch.no_grad():  # non-trivial LayerNorms and biases (initialised to 1 / 0)
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
    return model


def padding_mask(N):
    """right, left, a hole, fully padded, unpadded: [5, N] bool"""
    m = torch.zeros(5, N, dtype=torch.bool)
    m[0, N - 7:] = True
    m[1, :5] = True
    m[2, 6:11] = True
    m[3, :] = True
    return m


@pytest.mark.parametrize("kind", ["pre_ln", "post_ln", "embedding_ln"])
@pytest.mark.parametrize("grad_mode", ["exact", "stop_grad_weights"])
def test_padded_batch_equals_rows_alone(kind, grad_mode):
    options = {"pre_ln": {}, "post_ln": dict(subln=False, normalize_before=False),
               "embedding_ln": dict(layernorm_embedding=True, no_scale_embedding=False)}[kind]
    model = random_encoder(grad_mode=grad_mode, **options)
    N, E = 19, model.embed_dim
    mask = padding_mask(N)
    x = torch.randn(mask.shape[0], N, E, dtype=torch.float64)
    x[mask] = float("nan")
    x.requires_grad_()
    dy = torch.randn_like(x)
    y = model(x, key_padding_mask=mask)
    (y * dy).sum().backward()
    assert torch.isfinite(y).all() and torch.all(y[mask] == 0)
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[mask] == 0)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for b in range(mask.shape[0]):
        real = (~mask[b]).nonzero().flatten()
        if real.numel() == 0:
            continue
        xb = x.detach()[b, real][None].requires_grad_()
        yb = model(xb)
        assert rel_err(y[b, real], yb[0]) <= 1e-12, b
        (yb[0] * dy[b, real]).sum().backward()
        assert rel_err(x.grad[b, real], xb.grad[0]) <= 1e-11, b
    for n, p in model.named_parameters():
        assert torch.isfinite(got[n]).all() and got[n].abs().max() > 0, n
        assert rel_err(got[n], p.grad) <= 1e-11, n


@pytest.mark.parametrize("kind", ["pre_ln", "post_ln"])
def test_gradcheck_tiny_encoder(kind):
    options = {"pre_ln": dict(layernorm_embedding=True), "post_ln": dict(subln=False, normalize_before=False)}[kind]
    model = random_encoder(E=8, heads=2, ffn=8, layers=1, segments=(2, 4), dilations=(1, 2), **options)
    mask = torch.tensor([[False] * 6, [True, False, False, False, False, True]])
    x = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    names = ["layers.0.self_attn.q_proj.weight", "layers.0.ffn.fc1.weight"]
    params = [dict(model.named_parameters())[n].detach().clone().requires_grad_() for n in names]

    def f(x, *ps):
        return stateless.functional_call(model, dict(zip(names, ps)), (x,), {"key_padding_mask": mask})

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_lengths_equal_mask_forward_and_backward():
    model = random_encoder()
    lengths = torch.tensor([13, 0, 19, 1], dtype=torch.int64)
    N = 19
    mask = torch.arange(N)[None, :] >= lengths[:, None]
    x = torch.randn(4, N, model.embed_dim, dtype=torch.float64)
    results = []
    for arg in ({"key_padding_mask": mask}, {"lengths": lengths}, {"lengths": lengths.to(torch.int32)},
                {"lengths": [13, 0, 19, 1]}):
        xi = x.clone().requires_grad_()
        y = model(xi, **arg)
        y.square().sum().backward()
        results.append((y.detach(), xi.grad))
    for y, g in results[1:]:
        assert torch.equal(y, results[0][0]) and torch.equal(g, results[0][1])


def test_from_config_reads_torchscale_fields(tmp_path):
    cfg = {"encoder_embed_dim": 16, "encoder_attention_heads": 2, "encoder_ffn_embed_dim": 24, "encoder_layers": 3,
           "segment_length": "[8, 16]", "dilated_ratio": "[1, 2]", "dropout": 0.1, "flash_attention": True,
           "subln": False, "encoder_normalize_before": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    model = longnet_torch.LongNetEncoder.from_config(str(path))
    assert len(model.layers) == 3 and model.layers[0].self_attn.segment_lengths == [8, 16]
    assert model.layers[0].self_attn.dilated_ratios == [1, 2] and model.layers[0].ffn.fc1.out_features == 24
    keys = set(model.state_dict())
    assert "layer_norm.weight" in keys and not any("inner_attn_ln" in k or "ffn_layernorm" in k for k in keys)
    # torchscale's postprocessing: subln forces encoder_normalize_before
    forced = longnet_torch.LongNetEncoder.from_config(dict(cfg, subln=True, encoder_normalize_before=False))
    assert forced.layers[0].normalize_before and forced.layer_norm is not None
    single = longnet_torch.LongNetEncoder.from_config(dict(cfg, segment_length=16, dilated_ratio=1))
    assert single.layers[0].self_attn.segment_lengths == [16]

    class EncoderConfig:  # torchscale's config is a plain attribute object
        def __init__(self, **kw):
            self.__dict__.update(kw)

    from_object = longnet_torch.LongNetEncoder.from_config(EncoderConfig(**cfg))
    assert set(from_object.state_dict()) == keys
    with pytest.raises(TypeError, match="config must be a dict, a JSON file or an EncoderConfig, got int"):
        longnet_torch.LongNetEncoder.from_config(5)


@pytest.mark.parametrize("change,exc,match", [
    ({"deepnorm": True}, ValueError, "deepnorm = True is not implemented"),
    ({"xpos_rel_pos": True}, ValueError, "xpos_rel_pos = True is not implemented"),
    ({"moe_expert_count": 4}, ValueError, "moe_expert_count = 4 is not implemented"),
    ({"activation_fn": "swish"}, ValueError, "activation_fn = 'swish'"),
    ({"vocab_size": 100}, ValueError, "vocab_size = 100 asks for an output projection"),
    ({"segment_length": None}, ValueError, "config needs segment_length"),
    ({"segment_length": "[8, x]"}, ValueError, r"segment_length = '\[8, x\]' is not a list of ints"),
    ({"dilated_ratio": [1, 0]}, ValueError, r"dilated_ratio\[1\] must be >= 1, got 0"),
    ({"encoder_layers": 0}, ValueError, "encoder_layers must be an int >= 1, got 0"),
    ({"layernorm_eps": -1.0}, ValueError, "layernorm_eps must be a positive number, got -1.0"),
    ({"subln": "yes"}, TypeError, "subln must be true or false, got 'yes'"),
])
def test_from_config_errors(change, exc, match):
    cfg = dict(encoder_embed_dim=16, encoder_attention_heads=2, encoder_ffn_embed_dim=24, encoder_layers=1,
               segment_length=[8], dilated_ratio=[1])
    with pytest.raises(exc, match=match):
        longnet_torch.LongNetEncoder.from_config(dict(cfg, **change))


def test_forward_errors():
    model = random_encoder()
    x = torch.randn(2, 10, model.embed_dim, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x must be \[B, N, 16\] embeddings, got \[2, 10, 8\]"):
        model(x[..., :8])
    with pytest.raises(ValueError, match=r"lengths\[1\] = 11 is outside 0..N = 0..10"):
        model(x, lengths=torch.tensor([3, 11]))
    with pytest.raises(ValueError, match="key_padding_mask or lengths, not both"):
        model(x, key_padding_mask=torch.zeros(2, 10, dtype=torch.bool), lengths=torch.tensor([3, 4]))
    with pytest.raises(ValueError, match="subln=False"):
        longnet_torch.LongNetEncoder(16, 2, 24, 1, [8], [1], normalize_before=False)
