#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates tests/data/encoder_00 and encoder_01: torchscale's real LongNetEncoder in float64 on CPU.

Usage (from the repository root; /usr/bin/python3 with Debian's python3-torch and python3-numpy):
    git clone https://github.com/microsoft/torchscale /tmp/torchscale   # or any checkout / bare git dir
    python3 tests/data/make_encoder_fixture.py --torchscale /tmp/torchscale [--out tests/data]

--torchscale is a checkout (holding torchscale/__init__.py) or a git directory (its HEAD is exported to
a temporary directory). Nothing of torchscale is copied into this repository. torchscale's optional or
CUDA-only imports are stubbed here: fairscale (checkpoint_wrapper, wrap: identity), timm (drop_path,
unused: drop_path_rate 0), einops (a small
`rearrange` that handles the patterns torchscale uses), and flash attention: `flash_attn_func` is
replaced by an exact float64 softmax attention returning (out [b, l, h, d], lse [b, h, l]) as flash-attn
does. Like flash-attn it gets no key padding mask (torchscale's DilatedAttention drops
`key_padding_mask` on its flash path), so the padded-batch references are each sequence run alone (see
README.md, encoder section).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------- stubs
def _rearrange(x, pattern, **sizes):
    """einops.rearrange for patterns of named axes, parenthesised groups and the literal 1."""
    left, right = (side.strip() for side in pattern.split("->"))

    def parse(side):
        groups, i, tokens = [], 0, side.replace("(", " ( ").replace(")", " ) ").split()
        while i < len(tokens):
            if tokens[i] == "(":
                j = tokens.index(")", i)
                groups.append(tokens[i + 1:j])
                i = j + 1
            else:
                groups.append([tokens[i]])
                i += 1
        return groups

    lg, rg = parse(left), parse(right)
    assert len(lg) == x.dim(), (pattern, x.shape)
    known = dict(sizes)
    for group, n in zip(lg, x.shape):
        names = [a for a in group if a != "1"]
        unknown = [a for a in names if a not in known]
        prod = 1
        for a in names:
            if a in known:
                prod *= known[a]
        if unknown:
            assert len(unknown) == 1, pattern
            known[unknown[0]] = n // prod
    elementary = [a for g in lg for a in g if a != "1"]
    x = x.reshape([known[a] for a in elementary])
    target = [a for g in rg for a in g if a != "1"]
    x = x.permute([elementary.index(a) for a in target])
    shape = []
    for g in rg:
        n = 1
        for a in g:
            if a != "1":
                n *= known[a]
        shape.append(n)
    return x.reshape(shape)


def exact_attention(q, k, v, dropout=0.0, bias=None, softmax_scale=None, is_causal=False):
    """flash_attn_func's contract in float64: q, k, v [b, l, h, d] -> out [b, l, h, d], lse [b, h, l]."""
    assert dropout == 0.0 and bias is None
    scale = softmax_scale if softmax_scale is not None else q.size(-1) ** -0.5
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if is_causal:
        n = q.size(1)
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    out = torch.einsum("bhqk,bkhd->bqhd", torch.exp(s - lse.unsqueeze(-1)), v)
    return out, lse


def install_stubs():
    fairscale = types.ModuleType("fairscale")
    fairscale_nn = types.ModuleType("fairscale.nn")
    fairscale_nn.checkpoint_wrapper = lambda m, *a, **k: m
    fairscale_nn.wrap = lambda m, *a, **k: m
    fairscale.nn = fairscale_nn
    einops = types.ModuleType("einops")
    einops.rearrange = _rearrange
    timm = types.ModuleType("timm")  # DropPath imports timm's drop_path; drop_path_rate is 0 here
    timm_models = types.ModuleType("timm.models")
    timm_layers = types.ModuleType("timm.models.layers")
    timm_layers.drop_path = lambda x, *a, **k: x
    timm.models, timm_models.layers = timm_models, timm_layers
    sys.modules.update({"fairscale": fairscale, "fairscale.nn": fairscale_nn, "einops": einops, "timm": timm,
                        "timm.models": timm_models, "timm.models.layers": timm_layers})


def torchscale_source(path, tmp):
    """Returns (directory to put on sys.path, commit)."""
    if os.path.isfile(os.path.join(path, "torchscale", "__init__.py")):
        try:
            commit = subprocess.check_output(["git", "-C", path, "rev-parse", "HEAD"], text=True).strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        return path, commit
    commit = subprocess.check_output(["git", "--git-dir", path, "rev-parse", "HEAD"], text=True).strip()
    archive = subprocess.check_output(["git", "--git-dir", path, "archive", "HEAD", "torchscale"])
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return tmp, commit


# ------------------------------------------------------------------------------------------ the model
def randomize(model, gen):
    """LayerNorm gains U(0.5, 1.5), biases N(0, 0.2^2); Linear weights N(0, 1/fan_in), biases N(0, 0.1^2);
    rounded to float32 (the float64 model runs on exactly the stored float32 values)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen, dtype=torch.float64) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen, dtype=torch.float64) * 0.2)
            elif isinstance(module, torch.nn.Linear):
                fan_in = module.weight.shape[1]
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen, dtype=torch.float64) * 0.1)
        for p in model.parameters():
            p.copy_(p.float().double())


def pure64_ffn_forward(self, x):
    """torchscale's FeedForwardNetwork.forward without the float32 cast around the activation."""
    x_shape = x.shape
    x = x.reshape(-1, x.size(-1))
    x = self.fc1(x)
    x = self.activation_fn(x)
    if self.ffn_layernorm is not None:
        x = self.ffn_layernorm(x)
    x = self.fc2(x)
    return x.view(x_shape)


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = np.ascontiguousarray(t.detach().numpy().astype("<f4")).tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def run(encoder, x, mask, pure64):
    """encoder_out and encoder_states (torchscale's return_all_hiddens) of token_embeddings x [B, N, D]."""
    for layer in encoder.layers:
        layer.ffn.forward = types.MethodType(pure64_ffn_forward, layer.ffn) if pure64 else \
            types.MethodType(type(layer.ffn).forward, layer.ffn)
    with torch.no_grad():
        r = encoder(src_tokens=None, encoder_padding_mask=mask, token_embeddings=x, return_all_hiddens=True)
    return r["encoder_out"], torch.stack(r["encoder_states"])


CASES = {
    # name: (seed, config overrides, note)
    "encoder_00": (7001, {}, "torchscale's LongNetEncoder defaults: pre-LN (encoder_normalize_before), Sub-LN, "
                   "final layer_norm (normalize_output), no embedding LayerNorm, embed scale 1, no XPos"),
    "encoder_01": (7002, {"layernorm_embedding": True, "no_scale_embedding": False},
                   "as encoder_00 plus layernorm_embedding and the sqrt(D) embedding scale"),
    "encoder_02": (7003, {"subln": False, "encoder_normalize_before": False},
                   "post-LN: no Sub-LNs, encoder_normalize_before False, hence no final layer_norm"),
}
BASE = dict(encoder_embed_dim=32, encoder_attention_heads=4, encoder_ffn_embed_dim=64, encoder_layers=2,
            segment_length="[8,16]", dilated_ratio="[1,2]", flash_attention=True, dropout=0.0,
            attention_dropout=0.0, activation_dropout=0.0, drop_path_rate=0.0, vocab_size=-1)
LENGTHS = [40, 27]  # batch row 1 is right-padded from 27 to N = 40 tokens
N = max(LENGTHS)


def make_case(out_dir, name, commit, modules):
    EncoderConfig, LongNetEncoder, mha = modules
    seed, overrides, note = CASES[name]
    args = EncoderConfig(**{**BASE, **overrides})
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    encoder = LongNetEncoder(args).double().eval()
    randomize(encoder, gen)
    D, L, B = args.encoder_embed_dim, args.encoder_layers, len(LENGTHS)
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((B, N, D)).astype(np.float32)  # pads hold random values too: never read
    mask = np.zeros((B, N), dtype=bool)
    for b, n in enumerate(LENGTHS):
        mask[b, n:] = True
    x = torch.from_numpy(emb.astype(np.float64))

    outputs, checks = {}, {}
    for suffix, pure64 in (("", False), ("_pure64", True)):
        out = np.zeros((B, N, D))
        states = np.zeros((L + 1, B, N, D))
        for b, n in enumerate(LENGTHS):  # each sequence alone, no padding: the reference of its real rows
            o, s = run(encoder, x[b:b + 1, :n], None, pure64)
            out[b, :n] = o[0].numpy()
            states[:, b, :n] = s[:, 0].numpy()
        outputs["encoder_out" + suffix] = out
        if pure64:
            outputs["encoder_states" + suffix] = states
    # torchscale's own padded batch: its flash path drops the mask, so the pads act as keys
    o, _ = run(encoder, x, torch.from_numpy(mask), False)
    real1 = slice(0, LENGTHS[1])
    checks["torchscale_padded_batch_vs_alone_row0_max_abs"] = float(np.abs(o[0].numpy() - outputs["encoder_out"][0]).max())
    checks["torchscale_padded_batch_vs_alone_row1_real_max_abs"] = float(
        np.abs(o[1, real1].numpy() - outputs["encoder_out"][1, real1]).max())
    checks["torchscale_vs_pure64_max_abs"] = float(np.abs(outputs["encoder_out"] - outputs["encoder_out_pure64"]).max())
    checks["max_abs_out"] = float(np.abs(outputs["encoder_out"]).max())
    # the stand-in attention against the non-flash MultiheadAttention path (one dense segment)
    q, k, v = (torch.randn(2, 5, 4, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    ref = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(8), -1)
    checks["exact_attention_vs_softmax_max_abs"] = float(
        (exact_attention(q, k, v)[0] - torch.einsum("bhqk,bkhd->bqhd", ref, v)).abs().max())

    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    state = {k: v for k, v in encoder.state_dict().items()}
    config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, list, type(None)))}
    write_safetensors(os.path.join(case_dir, "model.safetensors"), state,
                      {"produced_by": "tests/data/make_encoder_fixture.py", "torchscale_commit": commit})
    np.save(os.path.join(case_dir, "embeddings.npy"), emb)
    np.save(os.path.join(case_dir, "padding_mask.npy"), mask.astype(np.int32))  # 1 = pad
    for k, v in outputs.items():
        np.save(os.path.join(case_dir, k + ".npy"), v)
    files = {f: {"dtype": str(np.load(os.path.join(case_dir, f)).dtype), "shape": list(np.load(os.path.join(case_dir, f)).shape)}
             for f in sorted(os.listdir(case_dir)) if f.endswith(".npy")}
    params = {"case": name, "note": note, "seed": seed, "lengths": LENGTHS, "N": N,
              "produced_by": "tests/data/make_encoder_fixture.py: torchscale LongNetEncoder (float64, CPU, "
                             "exact attention for flash_attn_func)",
              "torchscale_commit": commit, "torch_version": torch.__version__,
              "config": config, "parameters": sorted(state), "checks": checks, "files": files}
    with open(os.path.join(case_dir, "params.json"), "w") as f:
        json.dump(params, f, indent=1, sort_keys=True)
        f.write("\n")
    print(name, json.dumps(checks))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torchscale", required=True, help="torchscale checkout or git directory")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    install_stubs()
    with tempfile.TemporaryDirectory() as tmp:
        src, commit = torchscale_source(a.torchscale, tmp)
        sys.path.insert(0, src)
        from torchscale.architecture.config import EncoderConfig
        from torchscale.component import multihead_attention as mha
        from torchscale.model.LongNet import LongNetEncoder
        mha.flash_attn_func = exact_attention
        for name in CASES:
            make_case(a.out, name, commit, (EncoderConfig, LongNetEncoder, mha))


if __name__ == "__main__":
    main()
