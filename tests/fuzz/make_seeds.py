#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): small valid inputs of
every kind each reader accepts, from the fixtures in tests/data and from generated data.

    python3 tests/fuzz/make_seeds.py          (needs numpy; rewrites the corpus folders)

Seeds are kept below 4 KiB (libFuzzer's default -max_len is taken from the largest seed).
"""
import json
import os
import shutil
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
CORPUS = os.path.join(HERE, "corpus")
MAX_SEED = 4096


def fresh(target):
    path = os.path.join(CORPUS, target)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write(folder, name, data):
    assert len(data) <= MAX_SEED, (name, len(data))
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def npy_bytes(array, version=None):
    import io
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def npy_seeds():
    out = fresh("npy")
    rng = np.random.default_rng(14)
    for dtype in ["<f2", "<f4", "<f8", "<i4", "<i8", ">f2", ">f4", ">f8", ">i4", ">i8"]:
        a = (rng.standard_normal((2, 3, 4)) * 100).astype(dtype)
        write(out, "c_%s.npy" % dtype.replace("<", "le").replace(">", "be"), npy_bytes(a))
    write(out, "fortran_f4.npy", npy_bytes(np.asfortranarray(rng.standard_normal((3, 2, 5)).astype("<f4"))))
    write(out, "fortran_be_i8.npy", npy_bytes(np.asfortranarray(np.arange(12, dtype=">i8").reshape(4, 3))))
    write(out, "scalar_f8.npy", npy_bytes(np.array(3.5)))
    write(out, "empty_0x5.npy", npy_bytes(np.zeros((0, 5), "<f4")))
    write(out, "vector_i4.npy", npy_bytes(np.arange(7, dtype="<i4")))
    write(out, "v2_f4.npy", npy_bytes(np.ones((2, 2), "<f4"), version=(2, 0)))
    write(out, "v3_f4.npy", npy_bytes(np.ones((3,), "<f4"), version=(3, 0)))
    # The fixtures' small files, as written by numpy on the machine that made them.
    for rel in ["decoder_00/tokens.npy", "train_00/tokens.npy", "attn_bwd_00/lse.npy"]:
        with open(os.path.join(DATA, rel), "rb") as f:
            data = f.read()
        if len(data) <= MAX_SEED:
            write(out, "fixture_" + rel.replace("/", "_"), data)


def safetensors_bytes(tensors, metadata=None, pad=0):
    """tensors: list of (name, dtype, shape, raw bytes). Offsets laid out back to back."""
    header, blobs, offset = {}, [], 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def safetensors_seeds():
    out = fresh("safetensors")
    rng = np.random.default_rng(15)

    def t(name, dtype, shape):
        numpy_dtype = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2"}[dtype]
        a = (rng.standard_normal(shape) * 10).astype(numpy_dtype if dtype != "BF16" else "<f4")
        raw = (a.view("<u4") >> 16).astype("<u2").tobytes() if dtype == "BF16" else a.tobytes()
        return (name, dtype, shape, raw)

    write(out, "one_f32.safetensors", safetensors_bytes([t("w", "F32", (3, 4))]))
    write(out, "all_dtypes.safetensors",
          safetensors_bytes([t("a", "F32", (2, 3)), t("b", "F64", (3,)), t("c", "BF16", (2, 2)), t("d", "F16", (5,))]))
    write(out, "metadata.safetensors", safetensors_bytes([t("x", "F16", (2, 2))], {"format": "pt", "note": "seed"}))
    write(out, "empty_tensor.safetensors", safetensors_bytes([t("e", "F32", (0, 4)), t("s", "F32", ())]))
    write(out, "padded_header.safetensors", safetensors_bytes([t("p", "BF16", (4,))], pad=6))
    write(out, "no_tensors.safetensors", safetensors_bytes([], {"format": "pt"}))
    # A tiny LongNet decoder checkpoint with the fixture's tensor names (D = 4, F = 8, V = 5, 1 layer).
    with open(os.path.join(DATA, "decoder_00", "model.safetensors"), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        names = sorted(k for k in json.loads(f.read(n)) if k != "__metadata__" and not k.startswith("layers.1."))
    shapes = {"embed_tokens.weight": (5, 4), "output_projection.weight": (5, 4)}
    tensors = []
    for name in names:
        if name in shapes:
            shape = shapes[name]
        elif name.endswith("fc1.weight"):
            shape = (8, 4)
        elif name.endswith("fc2.weight"):
            shape = (4, 8)
        elif name.endswith("proj.weight"):
            shape = (4, 4)
        elif "fc1.bias" in name or "ffn_layernorm" in name:
            shape = (8,)
        elif name.endswith("xpos.scale"):
            shape = (1,)
        else:
            shape = (4,)
        tensors.append(t(name, "BF16", shape))
    write(out, "decoder_tiny.safetensors", safetensors_bytes(tensors))
    return tensors


def checkpoint_seeds(tensors):
    """config.json + model.safetensors of the tiny decoder: 4-byte length, config, weights."""
    out = fresh("checkpoint")
    config = json.dumps({"decoder_embed_dim": 4, "decoder_attention_heads": 2, "decoder_ffn_embed_dim": 8,
                         "decoder_layers": 1, "vocab_size": 5, "segment_length": [4, 8],
                         "dilated_ratio": [1, 2]}).encode()
    as_f32 = []
    for name, dtype, shape, raw in tensors:  # the BF16 weights widened to F32
        bits = np.frombuffer(raw, "<u2").astype("<u4") << 16
        as_f32.append((name, "F32", shape, bits.tobytes()))
    for label, ts in [("bf16", tensors), ("f32", as_f32)]:
        write(out, "tiny_" + label, struct.pack("<I", len(config)) + config + safetensors_bytes(ts))


def config_seeds():
    out = fresh("decoder_config")
    with open(os.path.join(DATA, "decoder_00", "params.json")) as f:
        fixture = json.load(f)["decoder_config_all_fields"]
    write(out, "fixture_all_fields.json", json.dumps(fixture, indent=1).encode())
    write(out, "minimal.json", b'{"decoder_embed_dim": 64, "decoder_attention_heads": 4, "decoder_layers": 1}')
    write(out, "string_lists.json",
          b'{"segment_length": "[2048,4096]", "dilated_ratio": "[1,2]", "vocab_size": 100, "no_scale_embedding": false}')
    write(out, "single_ints.json", b'{"segment_length": 16, "dilated_ratio": 1, "layernorm_eps": 1e-6, "xpos_scale_base": 256.0}')
    write(out, "nulls.json", b'{"subln": null, "moe_freq": null, "rel_pos_buckets": 0, "activation_fn": "gelu"}')
    write(out, "tokenizer.json", json.dumps({"decoder_embed_dim": 64, "decoder_attention_heads": 4, "vocab_size": 300,
                                              "tokenizer": {"type": "sentencepiece", "path": "spm.model",
                                                            "fnv1a64": "2f423ccc8ad5d418", "vocab_size": 300}}).encode())
    write(out, "base.json", json.dumps({"decoder_embed_dim": 768, "decoder_attention_heads": 12,
                                         "decoder_ffn_embed_dim": 3072, "decoder_layers": 12, "vocab_size": 32000,
                                         "segment_length": [2048, 4096, 8192, 16384, 32768],
                                         "dilated_ratio": [1, 2, 4, 6, 12]}).encode())


def cli_seeds():
    out = fresh("cli")

    def argv(tool, *args):
        return bytes([tool]) + b"\0".join(a.encode() for a in args)

    write(out, "attend_files", argv(0, "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--segments", "2048,4096",
                                    "--dilations", "1,2", "--causal", "--out", "out.npy", "--lse", "lse.npy"))
    write(out, "attend_backward", argv(0, "--q=q.npy", "--k=k.npy", "--v=v.npy", "--dense", "--out=o.npy",
                                       "--dout=d.npy", "--dq=dq.npy", "--dk=dk.npy", "--dv=dv.npy",
                                       "--grad-mode", "stop_grad_weights", "--scale", "0.125"))
    write(out, "attend_random", argv(0, "--random", "1,1024,4,64", "--segments", "256,512", "--dilations", "1,2",
                                     "--dtype", "bfloat16", "--repeat", "2", "--seed", "7", "--backward",
                                     "--offsets", "torchscale", "--tail", "zero_pad"))
    write(out, "attend_help", argv(0, "--help"))
    write(out, "demo", argv(1, "--tokens", "65536", "--heads", "2", "--dim", "32", "--causal", "--seed", "3"))
    write(out, "lm_files", argv(2, "--weights", "m.safetensors", "--config", "c.json", "--tokens", "t.npy",
                                "--logits", "l.npy", "--dtype", "double", "--angles", "float64", "--last-only",
                                "--attention", "dense", "--offsets", "paper"))
    write(out, "lm_random", argv(2, "--random-config", "base", "--tokens-random", "4096", "--layers", "2",
                                 "--vocab", "100", "--weights-dtype", "bf16", "--seed", "9"))
    # longnet_train (selector 4): every flag in one of the seeds
    write(out, "train_recall", argv(4, "--random-config", "tiny", "--task", "recall", "--seq-len", "256",
                                    "--recall-pairs", "4", "--recall-copies", "2", "--recall-queries", "3",
                                    "--segment-length", "64,128", "--dilated-ratio", "1,2", "--xpos-scale-base", "512",
                                    "--steps", "10", "--lr", "1e-3", "--schedule", "cosine", "--warmup", "2",
                                    "--min-lr", "1e-5", "--betas", "0.9,0.95", "--eps", "1e-8", "--weight-decay", "0.1",
                                    "--clip-norm", "1", "--grad-mode", "stop_grad_weights", "--checkpoint-activations",
                                    "--seed", "5", "--dtype", "double", "--angles", "float64", "--eval-every", "5",
                                    "--eval-batches", "2", "--save-every", "5", "--out", "run"))
    write(out, "train_files", argv(4, "--weights=w.safetensors", "--config=c.json", "--tokens=t.npy", "--seq-len=128",
                                   "--batch=4", "--heldout=0.2", "--save-grads", "g.safetensors", "--save", "p.safetensors",
                                   "--save-dtype", "float64", "--schedule=constant"))
    write(out, "train_text", argv(4, "--random-config", "small", "--text", "book.txt", "--vocab", "300"))
    write(out, "train_resume", argv(4, "--resume", "run", "--steps", "20"))
    write(out, "train_data_parallel", argv(4, "--random-config", "tiny", "--task", "recall", "--seq-len", "512",
                                           "--batch", "4", "--data-parallel", "2"))
    write(out, "lm_perplexity", argv(2, "perplexity", "--weights", "m.safetensors", "--config", "c.json", "--data",
                                      "val_*.bin", "--ctx", "16,32", "--stride", "8"))
    write(out, "lm_perplexity_kl", argv(2, "perplexity", "--weights", "m.safetensors", "--config", "c.json", "--tokens",
                                         "t.npy", "--ctx", "64", "--kl-base", "b.npy", "--weights-dtype", "bf16"))
    write(out, "train_passkey", argv(4, "--random-config", "tiny", "--task", "passkey", "--seq-len", "432",
                                     "--passkey-max", "9", "--passkey-loss", "all", "--batch", "8"))
    write(out, "lm_passkey", argv(2, "passkey", "--weights", "m.safetensors", "--config", "c.json", "--length", "432,4096",
                                   "--trials", "4", "--depths", "0,0.5,1", "--seed", "3", "--passkey-max", "99"))
    write(out, "train_data", argv(4, "--random-config", "tiny", "--data", "train_*.bin", "--heldout", "val_*.bin",
                                  "--seq-len", "64", "--eval-every", "2"))
    # longnet_distributed (selector 5)
    write(out, "distributed_default", argv(5, "--tokens", "16M", "--heads", "1", "--dim", "64"))
    write(out, "distributed_branches", argv(5, "--tokens", "64K", "--branches", "2048:1,4096:2,8192:4", "--causal",
                                            "--type", "float", "--offsets", "torchscale", "--check-rows", "8",
                                            "--backward", "--seed", "3", "--batch", "2"))
    write(out, "distributed_paper", argv(5, "--config", "paper", "--tokens", "1m", "--max-segment", "256k",
                                         "--heads", "2", "--dim", "32", "--config", "paper-extended"))
    write(out, "distributed_help", argv(5, "--help"))
    # longnet_encode (selector 6)
    write(out, "encode_files", argv(6, "--weights", "w.safetensors", "--config", "c.json", "--embeddings", "x.npy",
                                    "--mask", "m.npy", "--out", "y.npy", "--cls-out", "cls.npy", "--dtype", "double"))
    write(out, "encode_random", argv(6, "--random-config", "gigapath", "--random-tokens", "10000", "--layers", "2",
                                     "--seed", "3", "--out=y.npy"))
    rng = struct.pack("<qq", 1, 1 << 40)
    write(out, "number_int", bytes([3, 0]) + rng + b"+0002048")
    write(out, "number_uint64", bytes([3, 1]) + rng + b"18446744073709551615")
    write(out, "number_double", bytes([3, 2]) + rng + b"-1.5e-3")
    write(out, "number_list", bytes([3, 3]) + rng + b"2048,4096,8192")


def shard_bytes(magic, version, count, tokens, fmt):
    header = struct.pack("<3i", magic, version, count) + bytes(1024 - 12)
    return header + b"".join(struct.pack(fmt, t) for t in tokens)


def token_shard_seeds():
    """llm.c token shards (io/token_shards.hpp): both widths and versions, an empty shard, defects."""
    out = fresh("token_shard")
    write(out, "u16_v1", shard_bytes(20240520, 1, 6, [0, 1, 255, 50256, 65535, 7], "<H"))
    write(out, "u32_v7", shard_bytes(20240801, 7, 4, [0, 128255, 4000000000, 3], "<I"))
    write(out, "u32_v1", shard_bytes(20240801, 1, 3, [5, 70000, 1], "<I"))
    write(out, "empty", shard_bytes(20240520, 1, 0, [], "<H"))
    write(out, "bytes_text", shard_bytes(20240520, 1, 12, list(b"hello, world"), "<H"))
    write(out, "count_mismatch", shard_bytes(20240520, 1, 9, [1, 2, 3], "<H"))
    write(out, "bad_magic", shard_bytes(20240519, 1, 1, [1], "<H"))


if __name__ == "__main__":
    npy_seeds()
    checkpoint_seeds(safetensors_seeds())
    config_seeds()
    cli_seeds()
    token_shard_seeds()
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = sum(os.path.getsize(os.path.join(CORPUS, target, f)) for f in files)
        print("%-16s %3d seeds, %6d bytes" % (target, len(files), size))
