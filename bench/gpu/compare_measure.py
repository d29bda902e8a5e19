#!/usr/bin/env python3
"""Per-option costs of two mixq measurements of one model (e.g. CPU and CUDA).

Usage: compare_measure.py A.json B.json
Prints one JSON object: the number of options, Spearman of their costs, and the
median and largest relative difference |b - a| / a."""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "measure"))
from compare_schemes import options, spearman  # noqa: E402

a, b = options(sys.argv[1]), options(sys.argv[2])
keys = sorted(set(a) & set(b))
rel = [abs(b[k] - a[k]) / a[k] for k in keys]
print(json.dumps({"options": len(keys), "only_in_one": len(set(a) ^ set(b)),
                  "spearman": spearman([a[k] for k in keys], [b[k] for k in keys]),
                  "median_rel_diff": statistics.median(rel), "max_rel_diff": max(rel)}))
