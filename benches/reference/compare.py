#!/usr/bin/env python3
"""Side-by-side table of two step-time JSON files (same schema): plasticity's
`bench_rules --json` and a reference script's (`numpy_step.py` / `torch_step.py --json`).

    python3 benches/reference/compare.py ours.json reference.json [--rules bp,dfa]

Prints a Markdown table, one row per shape both files measured: each rule's median ms
in both, how many times faster plasticity is (reference ms / ours; > 1 means faster),
and DFA's speedup over BP in each.
"""

import argparse
import json
import sys


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"compare.py: cannot read {path}: {e}")
    rows = {}
    for row in data.get("rows", []):
        rows[(row["width"], row["depth"], row["batch"])] = row
    return data, rows


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ours")
    p.add_argument("reference")
    p.add_argument("--rules", default="bp,dfa", help="rules to show (default bp,dfa)")
    args = p.parse_args()
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]

    ours, our_rows = load(args.ours)
    ref, ref_rows = load(args.reference)
    ref_name = ref.get("tool", "reference")
    print(f"plasticity on {ours.get('device')}; {ref_name} on {ref.get('device')}\n")

    head = ["width", "depth", "batch"]
    for r in rules:
        head += [f"{r.upper()} {ref_name} ms", f"{r.upper()} plasticity ms", f"{r.upper()} ×"]
    head += [f"DFA speedup {ref_name}", "DFA speedup plasticity"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))

    shared = sorted(set(our_rows) & set(ref_rows))
    if not shared:
        sys.exit("compare.py: the two files measured no shape in common")
    for key in shared:
        a, b = our_rows[key], ref_rows[key]
        cells = [str(k) for k in key]
        for r in rules:
            mine, theirs = a.get("ms", {}).get(r), b.get("ms", {}).get(r)
            ratio = theirs / mine if mine and theirs else None
            cells += [fmt(theirs), fmt(mine), fmt(ratio, ".2f")]
        cells += [fmt(b.get("dfa_speedup"), ".2f"), fmt(a.get("dfa_speedup"), ".2f")]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
