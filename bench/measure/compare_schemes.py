#!/usr/bin/env python3
"""Per-option costs of two mixq measurements of one model (linear vs exact calibration).

Usage: compare_schemes.py LINEAR.json EXACT.json PROBE_LAYERS
PROBE_LAYERS: comma-separated layers the linear scheme propagated exactly; the
options of tensors in the other layers are the "predicted" ones. Prints one JSON
object: Spearman over all options and over predicted ones, and the median and
p10/p90 of linear/exact on predicted options.
"""
import json
import re
import sys


def options(path):
    doc = json.load(open(path))
    out = {}
    for unit in doc["units"]:
        for o in unit["options"]:
            if o["cost"] > 0:
                out[(unit["name"], o["type"])] = o["cost"]
    return out


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5


def quantile(sorted_values, q):
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def layer_of(name):
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def main():
    linear, exact = options(sys.argv[1]), options(sys.argv[2])
    probes = {int(x) for x in sys.argv[3].split(",") if x}
    keys = sorted(set(linear) & set(exact))
    predicted = [k for k in keys if layer_of(k[0]) is not None and layer_of(k[0]) not in probes]
    ratios = sorted(linear[k] / exact[k] for k in predicted)
    print(json.dumps({
        "options": len(keys),
        "predicted_options": len(predicted),
        "spearman_all": round(spearman([linear[k] for k in keys], [exact[k] for k in keys]), 4),
        "spearman_predicted": round(spearman([linear[k] for k in predicted], [exact[k] for k in predicted]), 4),
        "median_ratio_predicted": round(quantile(ratios, 0.5), 3),
        "p10_ratio_predicted": round(quantile(ratios, 0.1), 3),
        "p90_ratio_predicted": round(quantile(ratios, 0.9), 3),
    }))


if __name__ == "__main__":
    main()
