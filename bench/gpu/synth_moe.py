#!/usr/bin/env python3
"""Writes a synthetic qwen3moe model (random weights of realistic scale) as an
F16 GGUF, by default shaped as a 30B-A3B (d 2048, 32/4 heads of 128, 128
experts 768 wide, top 8, vocab 151936) with as many layers as asked: each
layer holds 604 M expert weights (1.2 GB of F16), so 48 layers need 58 GB.

usage: synth_moe.py OUT.gguf [--layers 4] [--experts 128] [--used 8] ...
Random numbers come from the GPU when PyTorch sees one, else from numpy."""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_write as gw  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--layers", type=int, default=4)
p.add_argument("--d", type=int, default=2048)
p.add_argument("--heads", type=int, default=32)
p.add_argument("--kv-heads", type=int, default=4)
p.add_argument("--head-dim", type=int, default=128)
p.add_argument("--experts", type=int, default=128)
p.add_argument("--used", type=int, default=8)
p.add_argument("--ff-exp", type=int, default=768)
p.add_argument("--vocab", type=int, default=151936)
a = p.parse_args()

try:
    import torch
    gpu = torch.cuda.is_available()
except ImportError:
    gpu = False
rng = np.random.default_rng(7)
if gpu:
    gen = torch.Generator(device="cuda").manual_seed(7)


def normal(shape, scale, mean=0.0, f32=False):
    def make():
        if gpu:
            x = torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32) * scale + mean
            return x.to(torch.float16 if len(shape) >= 2 and not f32 else torch.float32).cpu().numpy()
        return (rng.standard_normal(shape, dtype=np.float32) * scale + mean)
    return make


def matrix(*shape, f32=False):  # rows first; N(0, 1/n_in)
    return (list(shape), normal(shape, shape[-1] ** -0.5, f32=f32), f32)


def norm(n):
    return ([n], normal((n,), 0.1, 1.0), True)


d, q_dim, kv_dim = a.d, a.heads * a.head_dim, a.kv_heads * a.head_dim
tensors = [("token_embd.weight", *matrix(a.vocab, d)), ("output_norm.weight", *norm(d)),
           ("output.weight", *matrix(a.vocab, d))]
for i in range(a.layers):
    b = f"blk.{i}."
    tensors += [(b + "attn_norm.weight", *norm(d)), (b + "attn_q.weight", *matrix(q_dim, d)),
                (b + "attn_k.weight", *matrix(kv_dim, d)), (b + "attn_v.weight", *matrix(kv_dim, d)),
                (b + "attn_q_norm.weight", *norm(a.head_dim)), (b + "attn_k_norm.weight", *norm(a.head_dim)),
                (b + "attn_output.weight", *matrix(d, q_dim)), (b + "ffn_norm.weight", *norm(d)),
                (b + "ffn_gate_inp.weight", *matrix(a.experts, d, f32=True)),  # F32, as llama.cpp converts it
                (b + "ffn_gate_exps.weight", *matrix(a.experts, a.ff_exp, d)),
                (b + "ffn_up_exps.weight", *matrix(a.experts, a.ff_exp, d)),
                (b + "ffn_down_exps.weight", *matrix(a.experts, d, a.ff_exp))]

arch = "qwen3moe."
metadata = [("general.architecture", gw.STR, "qwen3moe")]
for k, v in [("context_length", 4096), ("embedding_length", d), ("feed_forward_length", a.ff_exp),
             ("block_count", a.layers), ("attention.head_count", a.heads), ("attention.head_count_kv", a.kv_heads),
             ("attention.key_length", a.head_dim), ("attention.value_length", a.head_dim),
             ("rope.dimension_count", a.head_dim), ("expert_count", a.experts), ("expert_used_count", a.used),
             ("expert_feed_forward_length", a.ff_exp)]:
    metadata.append((arch + k, gw.U32, v))
metadata.append((arch + "attention.layer_norm_rms_epsilon", gw.F32, 1e-6))
metadata += gw.spm_vocab(a.vocab)
gw.write(a.out, metadata, tensors)
