#!/usr/bin/env python3
"""Side-by-side table of step-time JSON files (same schema): plasticity's
`bench_rules --json` and one or more reference scripts' (`numpy_step.py` /
`torch_step.py --json`).

    python3 benches/reference/compare.py ours.json numpy.json [torch.json] [--rules bp,dfa]

Prints a Markdown table, one row per shape every file measured: each rule's median ms
in each, how many times faster plasticity is than each reference (reference ms / ours;
> 1 means faster), and DFA's speedup over BP in each; then, per rule and reference, in
how many rows plasticity is faster.
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
    p.add_argument("references", nargs="+", metavar="reference")
    p.add_argument("--rules", default="bp,dfa", help="rules to show (default bp,dfa)")
    args = p.parse_args()
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]

    ours, our_rows = load(args.ours)
    refs = [load(path) for path in args.references]
    names = [ref.get("tool", "reference") for ref, _ in refs]
    print(f"plasticity on {ours.get('device')}; "
          + "; ".join(f"{n} on {ref.get('device')}" for n, (ref, _) in zip(names, refs))
          + "\n")

    head = ["width", "depth", "batch"]
    for r in rules:
        head.append(f"{r.upper()} plasticity ms")
        for n in names:
            head += [f"{r.upper()} {n} ms", f"{r.upper()} × {n}"]
    head += ["DFA speedup plasticity"] + [f"DFA speedup {n}" for n in names]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))

    shared = sorted(set(our_rows).intersection(*(rows for _, rows in refs)))
    if not shared:
        sys.exit("compare.py: the files measured no shape in common")
    ahead = {(r, n): 0 for r in rules for n in names}
    for key in shared:
        mine_row = our_rows[key]
        cells = [str(k) for k in key]
        for r in rules:
            mine = mine_row.get("ms", {}).get(r)
            cells.append(fmt(mine))
            for n, (_, rows) in zip(names, refs):
                theirs = rows[key].get("ms", {}).get(r)
                ratio = theirs / mine if mine and theirs else None
                ahead[(r, n)] += ratio is not None and ratio > 1
                cells += [fmt(theirs), fmt(ratio, ".2f")]
        cells.append(fmt(mine_row.get("dfa_speedup"), ".2f"))
        cells += [fmt(rows[key].get("dfa_speedup"), ".2f") for _, rows in refs]
        print("| " + " | ".join(cells) + " |")
    print()
    for (r, n), count in ahead.items():
        print(f"{r.upper()}: plasticity faster than {n} in {count} of {len(shared)} rows")


if __name__ == "__main__":
    main()
