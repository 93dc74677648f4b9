# SPDX-License-Identifier: Apache-2.0
"""Shared helpers of the longnet_torch tests: fixture loading, a safetensors reader, and a slow float64
oracle of SPEC.md written independently of the extension (one softmax per query over the multiset
union of the (branch, key) pairs it sees)."""

import json
import math
import os
import struct

import numpy as np
import pytest
import torch

DATA_DIR = os.environ.get("LONGNET_TEST_DATA_DIR",
                          os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))


def data_path(*parts):
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"fixture file missing: {path} (set LONGNET_TEST_DATA_DIR)")
    return path


def load_npy(case, name):
    return torch.from_numpy(np.load(data_path(case, name)))


def load_params(case):
    with open(data_path(case, "params.json")) as f:
        return json.load(f)


_SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}


def load_safetensors(path):
    """name -> torch tensor, from the format in tests/data/README.md."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        arr = np.frombuffer(blob[base + begin:base + end], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        tensors[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return tensors


def head_offset(policy, h, heads, r):
    if policy == "paper":
        return h % r
    group = -(-heads // r)
    return h // group


def oracle(q, k, v, segments, dilations, causal=False, offsets="paper", tail="exact", scale=None):
    """Dilated attention in float64 by its definition (SPEC §2-5), differentiable by torch autograd
    (the exact gradient). q, k, v: [B, N, H, D]. Returns (out, lse)."""
    q, k, v = q.double(), k.double(), v.double()
    B, N, H, D = q.shape
    tau = 1.0 / math.sqrt(D) if scale is None else scale
    outs, lses = [], []
    for h in range(H):
        # multiplicity[p, j]: in how many branches query p sees key j; pad[p]: padding keys p sees
        mult = torch.zeros(N, N, dtype=torch.float64)
        pad = torch.zeros(N, dtype=torch.float64)
        for w, r in zip(segments, dilations):
            o = head_offset(offsets, h, H, r)
            w_eff = min(w, N)
            for start in range(0, N, w_eff):
                padded_len = -(-w_eff // r) * r if tail == "zero_pad" else w_eff
                rows = [start + i for i in range(o, padded_len, r)]
                real = [p for p in rows if p < min(start + w_eff, N)]
                n_pad = len(rows) - len(real)
                for p in real:
                    for j in real:
                        if not causal or j <= p:
                            mult[p, j] += 1
                    if tail == "zero_pad" and not causal:
                        pad[p] += n_pad
        scores = tau * torch.einsum("bnd,bmd->bnm", q[:, :, h], k[:, :, h])  # [B, N, N]
        logits = scores + torch.where(mult > 0, torch.log(mult.clamp(min=1)), torch.full_like(mult, -math.inf))
        # padding keys: logit 0, value 0, counted pad[p] times
        pad_logit = torch.where(pad > 0, torch.log(pad.clamp(min=1)), torch.full_like(pad, -math.inf))
        full = torch.cat([logits, pad_logit.expand(B, N)[..., None]], dim=-1)
        covered = ((mult > 0).any(dim=1) | (pad > 0)).expand(B, N)  # rows this head selects somewhere
        # uncovered rows: logsumexp of zeros instead of all -inf (whose gradient is NaN), then masked
        lse = torch.logsumexp(torch.where(covered[..., None], full, torch.zeros_like(full)), dim=-1)
        prob = torch.exp(full - lse[..., None])
        prob = torch.where(covered[..., None], prob, torch.zeros_like(prob))
        lse = torch.where(covered, lse, torch.full_like(lse, -math.inf))  # [B, N]
        outs.append(torch.einsum("bnm,bmd->bnd", prob[..., :N], v[:, :, h]))
        lses.append(lse)
    return torch.stack(outs, dim=2), torch.stack(lses, dim=2)


def rel_err(got, ref):
    """max |got - ref| / max |ref| over finite entries (infinite entries must match exactly)."""
    got, ref = got.double(), ref.double()
    inf = ~torch.isfinite(ref)
    if inf.any():
        assert torch.equal(got[inf], ref[inf]), "non-finite entries differ"
    fin = ~inf
    if not fin.any():
        return 0.0
    scale = ref[fin].abs().max().item()
    return (got[fin] - ref[fin]).abs().max().item() / max(scale, 1e-300)


def lse_err(got, ref):
    """max abs error of finite LSE entries; -inf entries must match exactly."""
    got, ref = got.double(), ref.double()
    inf = ~torch.isfinite(ref)
    assert torch.equal(torch.isinf(got), inf), "-inf pattern of the lse differs"
    return (got[~inf] - ref[~inf]).abs().max().item() if (~inf).any() else 0.0


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
