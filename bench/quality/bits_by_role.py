#!/usr/bin/env python3
"""Bits per weight by tensor role in two GGUF files (`mixq inspect` output), to show
where a mixq plan puts more or fewer bits than a llama.cpp preset of the same size.
Usage: bits_by_role.py MIXQ_BINARY OURS.gguf THEIRS.gguf"""
import re
import subprocess
import sys

# The role of a tensor, from its name: the groups the MoE recipes talk about.
# First match wins: qwen2moe's shared-expert gate ffn_gate_inp_shexp is a
# shared-expert tensor, not the router.
ROLES = [
    ("shared experts", r"_shexp"),
    ("router", r"ffn_gate_inp"),
    ("routed experts: down", r"ffn_down_exps"),
    ("routed experts: gate/up", r"ffn_(gate|up)_exps"),
    ("attention: v/output", r"attn_(v|output)\."),
    ("attention: q/k", r"attn_(q|k)\."),
    ("ffn: down", r"ffn_down\."),
    ("ffn: gate/up", r"ffn_(gate|up)\."),
    ("token embedding", r"token_embd"),
    ("output head", r"^output\.weight"),
]


def role_of(name):
    for role, pattern in ROLES:
        if re.search(pattern, name):
            return role
    return None


def bits_by_role(binary, path):
    out = subprocess.run([binary, "inspect", path], check=True, capture_output=True, text=True).stdout
    acc = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 5 or not cols[0].endswith(".weight"):
            continue
        role = role_of(cols[0])
        if role is None:
            continue
        n = 1
        for d in re.findall(r"\d+", " ".join(cols[1:-3])):
            n *= int(d)
        bytes_, weights = acc.get(role, (0, 0))
        acc[role] = (bytes_ + int(cols[-2]), weights + n)
    return acc


def main():
    binary, ours, theirs = sys.argv[1:4]
    a, b = bits_by_role(binary, ours), bits_by_role(binary, theirs)
    print("| role | weights | llama.cpp bpw | mixq bpw | change |")
    print("|---|---|---|---|---|")
    for role, _ in ROLES:
        if role not in a:
            continue
        bpw_a = 8 * a[role][0] / a[role][1]
        bpw_b = 8 * b[role][0] / b[role][1]
        print(f"| {role} | {a[role][1]} | {bpw_b:.2f} | {bpw_a:.2f} | {bpw_a - bpw_b:+.2f} |")


if __name__ == "__main__":
    main()
