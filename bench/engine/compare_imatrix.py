#!/usr/bin/env python3
"""Compares two GGUF imatrix files (llama-imatrix's and mixq's) value by value:
per tensor, the importance in_sum2 / count of every column of every expert.
Usage: compare_imatrix.py A.gguf B.gguf   (prints JSON: entries, counts, max and median relative difference)"""
import json
import statistics
import struct
import sys
from array import array

SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf(path):
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(SCALAR[t])

    assert data[:4] == b"GGUF", path
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        ttype, offset = take("I"), take("Q")
        infos.append((name, dims, ttype, offset))
    align = meta.get("general.alignment", 32)
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, ttype, offset in infos:
        assert ttype == 0, (name, ttype)  # F32
        n = 1
        for d in dims:
            n *= d
        a = array("f")
        a.frombytes(data[base + offset:base + offset + 4 * n])
        tensors[name] = (dims, a)
    return meta, tensors


def importances(tensors):
    out = {}
    for name, (dims, sums) in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        weight = name[: -len(".in_sum2")]
        counts = tensors[weight + ".counts"][1]
        per = len(sums) // len(counts)
        out[weight] = ([sums[i] / round(counts[i // per]) if round(counts[i // per]) > 0 else 1.0
                        for i in range(len(sums))], list(counts))
    return out


def main():
    a = importances(read_gguf(sys.argv[1])[1])
    b = importances(read_gguf(sys.argv[2])[1])
    rel = []
    counts_equal = True
    for name in a.keys() & b.keys():
        va, ca = a[name]
        vb, cb = b[name]
        counts_equal &= ca == cb
        rel += [abs(x - y) / max(abs(x), 1e-30) for x, y in zip(va, vb)]
    print(json.dumps({"entries_a": len(a), "entries_b": len(b), "common": len(a.keys() & b.keys()),
                      "only_a": sorted(a.keys() - b.keys()), "only_b": sorted(b.keys() - a.keys()),
                      "counts_equal": counts_equal, "values": len(rel),
                      "max_rel_diff": max(rel), "median_rel_diff": statistics.median(rel)}))


if __name__ == "__main__":
    main()
