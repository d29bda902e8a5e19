#!/usr/bin/env python3
"""Types chosen by two plans of one model (mixq plan -o).

Usage: compare_plans.py A.json B.json
Prints one JSON object: units, how many got another type, those units with
both types, and both plans' predicted cost and bytes."""
import json
import sys


def load(path):
    with open(path) as f:
        plan = json.load(f)
    return plan, {u["name"]: u["type"] for u in plan["units"]}


(pa, a), (pb, b) = load(sys.argv[1]), load(sys.argv[2])
changed = {k: [a[k], b.get(k)] for k in sorted(a) if a[k] != b.get(k)}
print(json.dumps({"units": len(a), "changed": len(changed), "which": changed,
                  "cost": [pa["cost"], pb["cost"]], "file_n_bytes": [pa["file_n_bytes"], pb["file_n_bytes"]]}))
