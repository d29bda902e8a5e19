#!/usr/bin/env python3
"""Summarizes run_device.sh growth's JSON lines: per shape and stage, the wall
time, and its ratio to the H200's limits for the same work: the arithmetic of
the forward passes (2 flops per weight per token at 989 TFLOP/s, dense F16
tensor cores) and one read of the F16 weights per pass (4.8 TB/s).

usage: growth_table.py growth.jsonl"""
import json
import sys

FLOPS = 989e12
BANDWIDTH = 4.8e12
VOCAB = 32000
CTX = 512
# Tokens through the forward passes of each stage, as run_device.sh runs them
# (eval and imatrix 8 chunks; measure 1 chunk; gptq 8 chunks of covariance).
TOKENS = {"eval": 8 * CTX, "imatrix": 8 * CTX, "measure": 1 * CTX, "gptq": 8 * CTX}

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| d | FFN | layers | weights (B) | stage | seconds | rc | × arithmetic limit | × weight-read limit |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    d, ff, heads, kv, layers = r["d"], r["ff"], r["heads"], r["kv_heads"], r["layers"]
    kv_dim = d // heads * kv
    per_layer = d * (2 * d + 2 * kv_dim) + 3 * d * ff
    matmul = layers * per_layer + VOCAB * d  # the output head; the embedding is a lookup
    weights = matmul + VOCAB * d
    arithmetic = 2 * matmul * TOKENS[r["stage"]] / FLOPS
    weight_read = 2 * weights / BANDWIDTH
    print(f"| {d} | {ff} | {layers} | {weights / 1e9:.2f} | {r['stage']} | {r['seconds']:.1f} | {r['rc']} | "
          f"{r['seconds'] / arithmetic:.0f} | {r['seconds'] / weight_read:.0f} |")
