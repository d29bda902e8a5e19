#!/usr/bin/env python3
"""Writes an 8B-shaped synthetic llama (random weights of realistic scale) as an
F16 GGUF for mixq, and times a PyTorch bf16 LlamaForCausalLM forward of the
same weights over the same batch shape that `mixq eval` runs (chunks of
--ctx tokens, 4 chunks per forward, log-softmax and NLL of the scored half).

usage: llama8b.py OUT.gguf [--layers 32] [--chunks 16] [--ctx 512]
Prints one JSON line with the PyTorch timing."""
import argparse
import json
import os
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_write as gw  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--layers", type=int, default=32)
p.add_argument("--d", type=int, default=4096)
p.add_argument("--ff", type=int, default=14336)
p.add_argument("--heads", type=int, default=32)
p.add_argument("--kv-heads", type=int, default=8)
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--chunks", type=int, default=16)
p.add_argument("--ctx", type=int, default=512)
a = p.parse_args()

cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.d, intermediate_size=a.ff, num_hidden_layers=a.layers,
                  num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=4096,
                  rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, attn_implementation="sdpa")
torch.manual_seed(7)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
# Realistic scale: N(0, 1/n_in) matrices, norms near 1.
with torch.no_grad():
    for name, t in model.named_parameters():
        if t.dim() == 2:
            t.normal_(0.0, t.shape[1] ** -0.5)
        else:
            t.copy_(1.0 + 0.1 * torch.randn_like(t))

# ---- GGUF (F16 matrices, F32 norms), llama.cpp's names and q/k row order ----
hd = a.d // a.heads


def permute(w, n_head):  # HF's rotate-half rows to llama.cpp's interleaved pairs
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


tensors = [("token_embd.weight", model.model.embed_tokens.weight), ("output_norm.weight", model.model.norm.weight),
           ("output.weight", model.lm_head.weight)]
for i, l in enumerate(model.model.layers):
    b = f"blk.{i}."
    tensors += [(b + "attn_norm.weight", l.input_layernorm.weight),
                (b + "attn_q.weight", permute(l.self_attn.q_proj.weight, a.heads)),
                (b + "attn_k.weight", permute(l.self_attn.k_proj.weight, a.kv_heads)),
                (b + "attn_v.weight", l.self_attn.v_proj.weight), (b + "attn_output.weight", l.self_attn.o_proj.weight),
                (b + "ffn_norm.weight", l.post_attention_layernorm.weight),
                (b + "ffn_gate.weight", l.mlp.gate_proj.weight), (b + "ffn_up.weight", l.mlp.up_proj.weight),
                (b + "ffn_down.weight", l.mlp.down_proj.weight)]


metadata = [("general.architecture", gw.STR, "llama")]
for k, v in [("context_length", 4096), ("embedding_length", a.d), ("feed_forward_length", a.ff),
             ("block_count", a.layers), ("attention.head_count", a.heads), ("attention.head_count_kv", a.kv_heads),
             ("rope.dimension_count", hd)]:
    metadata.append(("llama." + k, gw.U32, v))
metadata.append(("llama.attention.layer_norm_rms_epsilon", gw.F32, 1e-5))
metadata += gw.spm_vocab(a.vocab)
t0 = time.time()
gw.write(a.out, metadata,
         [(name, list(t.shape), lambda t=t: t.detach().float().cpu().numpy(), t.dim() < 2) for name, t in tensors])
write_s = time.time() - t0

# ---- PyTorch forward: the same chunking as `mixq eval` ----
batch = max(1, 2048 // a.ctx)
first = a.ctx // 2
gen = torch.Generator(device="cuda").manual_seed(1)
ids = torch.randint(259, a.vocab, (a.chunks, a.ctx), device="cuda", generator=gen)


def run(n_chunks):
    total = 0.0
    for c0 in range(0, n_chunks, batch):
        x = ids[c0:c0 + batch]
        logits = model(x, logits_to_keep=a.ctx - first).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1)
        total += -lp.gather(-1, x[:, first + 1:, None]).sum().item()
    return total


with torch.inference_mode():
    run(batch)  # warm-up
    torch.cuda.synchronize()
    t0 = time.time()
    run(a.chunks)
    torch.cuda.synchronize()
    secs = time.time() - t0
print(json.dumps({"torch_seconds": secs, "torch_tokens_per_second": a.chunks * a.ctx / secs, "chunks": a.chunks,
                  "ctx": a.ctx, "layers": a.layers, "gguf_write_seconds": write_s,
                  "torch_peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30}), flush=True)
