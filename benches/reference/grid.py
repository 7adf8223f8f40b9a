"""What numpy_step.py and torch_step.py share: the grid's constants and arguments, the
timing loop, the Markdown table, the memory notes and the JSON report.

Pure Python on purpose: numpy_step.py imports this before it sets the BLAS thread
variables and imports numpy, so nothing here may import numpy or torch.
"""

import argparse
import json
import math
import sys
import time

CLASSES = 10
RULES = ("bp", "fa", "dfa")
# Grid defaults (the same in numpy_step.py, torch_step.py and bench_rules).
GRID_WIDTHS, GRID_DEPTHS, GRID_BATCH = "256,1024,4096", "2,4,8,16", "32,128,512"


# --------------------------------------------------------------------------------------
# Arguments


def parser(doc):
    """An ArgumentParser whose description is the first paragraph of `doc` and whose
    epilog is the rest, as written."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc.split("\n\n")[1:]))


def int_list(p, flag, text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        p.error(f"{flag} wants comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        p.error(f"{flag} wants positive integers, got {text!r}")
    return values


def add_grid_args(p, widths_help, depths_help, batch_help):
    """--widths, --depths and --batch, in that order, each a comma list (None if not
    given; see set_grid)."""
    p.add_argument("--widths", default=None, help=widths_help)
    p.add_argument("--depths", default=None, help=depths_help)
    p.add_argument("--batch", default=None, help=batch_help)


def add_rule_arg(p):
    p.add_argument("--rule", default="all", help="bp, fa, dfa, a comma list of them, or all")


def add_lr_arg(p):
    p.add_argument("--lr", type=float, default=1e-3)


def set_grid(p, args):
    """Resolve the grid lists (small ones with --quick) and the grid's --repeats and
    --warmup defaults."""
    quick = args.quick
    args.widths = int_list(p, "--widths", args.widths or ("256" if quick else GRID_WIDTHS))
    args.depths = int_list(p, "--depths", args.depths or ("2,4" if quick else GRID_DEPTHS))
    args.batch = int_list(p, "--batch", args.batch or ("32" if quick else GRID_BATCH))
    if args.repeats is None:
        args.repeats = 10 if quick else 20
    if args.warmup is None:
        args.warmup = 3 if quick else 5


def set_rules(p, args):
    """args.rule (a comma list or all) to args.rules: known rules, fixed order, no
    duplicates."""
    args.rules = list(RULES) if args.rule == "all" else args.rule.split(",")
    for r in args.rules:
        if r not in RULES:
            p.error(f"unknown rule {r!r}")
    args.rules = [r for r in RULES if r in args.rules]  # fixed order, no duplicates


# --------------------------------------------------------------------------------------
# Host and timing


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "cpu"


def available_bytes():
    """MemAvailable from /proc/meminfo, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def time_loop(step, args, sync=None):
    """--warmup untimed calls of step(i), then --repeats samples of --inner calls each,
    sync() (if given) after the warmup and after every sample. Returns the median and the
    minimum seconds per call and the last call's result."""
    i = 0
    result = None
    for _ in range(args.warmup):
        result = step(i)
        i += 1
    if sync is not None:
        sync()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.inner):
            result = step(i)
            i += 1
        if sync is not None:
            sync()
        times.append((time.perf_counter() - start) / args.inner)
    times.sort()
    mid = len(times) // 2
    median = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2
    return median, times[0], result


def check_loss(rule, loss):
    """Exit if the last loss is not finite (None: no step ran)."""
    if loss is not None and not math.isfinite(float(loss)):
        sys.exit(f"{rule}: loss diverged ({float(loss)})")


# --------------------------------------------------------------------------------------
# The grid's table, memory notes and JSON report


def print_intro(args, sgd_extra, device=None):
    """The lines above the grid's table. `sgd_extra` follows "sgd lr X" on the first
    line; `device`, if given, gets a line of its own."""
    print(f"grid: widths {args.widths} x depths {args.depths} x batch {args.batch} | "
          f"rules {','.join(args.rules)} | sgd lr {args.lr:g}{sgd_extra} | "
          f"{args.repeats} repeats x {args.inner} steps after {args.warmup} warmup")
    if device is not None:
        print(f"device: {device}")
    print("net: w inputs, d hidden layers of w (tanh), 10 classes (softmax CE); "
          "ms = median step time (min)")
    print()
    print("| width | depth | batch | BP ms (min) | FA ms (min) | DFA ms (min) "
          "| DFA speedup | samples/s (DFA) |")
    print("|------:|------:|------:|------------:|------------:|-------------:"
          "|------------:|----------------:|")


def new_row(width, depth, batch):
    return {"width": width, "depth": depth, "batch": batch,
            "ms": {}, "min_ms": {}, "dfa_speedup": None, "samples_per_s": {}}


def record(row, rule, median, best):
    """One rule's median and minimum seconds per step into the row."""
    row["ms"][rule] = round(median * 1e3, 5)
    row["min_ms"][rule] = round(best * 1e3, 5)
    row["samples_per_s"][rule] = round(row["batch"] / median, 1)


def finish_row(row, rows):
    """A row with any rule measured: its DFA speedup set, appended to rows and printed."""
    if not row["ms"]:
        return
    if "bp" in row["ms"] and "dfa" in row["ms"]:
        row["dfa_speedup"] = round(row["ms"]["bp"] / row["ms"]["dfa"], 4)
    rows.append(row)
    print_row(row)


def cell(row, rule):
    if rule not in row["ms"]:
        return "-"
    return f"{row['ms'][rule]:.3f} ({row['min_ms'][rule]:.3f})"


def print_row(row):
    speedup = "-" if row["dfa_speedup"] is None else f"{row['dfa_speedup']:.2f}x"
    sps = row["samples_per_s"].get("dfa")
    sps = "-" if sps is None else f"{sps:.0f}"
    print(f"| {row['width']} | {row['depth']} | {row['batch']} | {cell(row, 'bp')} | "
          f"{cell(row, 'fa')} | {cell(row, 'dfa')} | {speedup} | {sps} |", flush=True)


def shape_tag(row, rule):
    return f"w={row['width']} d={row['depth']} b={row['batch']} {rule}"


def memory_note(row, rule, need, free, share, word):
    """A skip note if `need` bytes exceed `share` of the `free` bytes (None: unknown),
    else None. `word` says what `free` is ("available", "free")."""
    if free is None or need <= share * free:
        return None
    return (f"{shape_tag(row, rule)}: needs about {need / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB {word}")


def oom_note(row, rule):
    return f"{shape_tag(row, rule)}: out of memory"


def print_skipped(skipped):
    for note in skipped:
        print(f"skipped (memory): {note}")


def report(tool, device, threads, rows, **extra):
    """The JSON document compare.py reads."""
    return {"tool": tool, "device": device, "threads": threads, "rows": rows, **extra}


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")
