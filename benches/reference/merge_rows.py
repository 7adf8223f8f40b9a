#!/usr/bin/env python3
"""Joins step-time JSON files of one tool (same schema as `bench_rules --json`,
`numpy_step.py --json` and `torch_step.py --json`) into one: the first file's header,
every file's rows. `cpu_side_by_side.sh` times the tools one grid row at a time, so
that a machine whose speed drifts over minutes slows all three alike, and joins each
tool's rows with this for `compare.py`.

    python3 benches/reference/merge_rows.py OUT.json ROW.json [ROW.json ...]
"""

import json
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip())
    out, parts = sys.argv[1], sys.argv[2:]
    merged = None
    for path in parts:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"merge_rows.py: cannot read {path}: {e}")
        if merged is None:
            merged = dict(data, rows=[])
        merged["rows"].extend(data.get("rows", []))
    with open(out, "w") as f:
        json.dump(merged, f, indent=2)


if __name__ == "__main__":
    main()
