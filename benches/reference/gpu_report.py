#!/usr/bin/env python3
"""One report from everything `benches/gpu_session.sh run DIR OUT` wrote into OUT.

    python3 benches/reference/gpu_report.py OUT

Writes OUT/report.json (every figure, one document) and OUT/report.md (Markdown tables:
GEMM GFLOP/s ours vs torch.matmul, the BP/DFA step grid ours vs PyTorch eager, MNIST
epoch seconds ours vs PyTorch, and the performance targets with pass/fail). A file that
is missing or broken (no torch, no CUDA, a section that failed) shows as "-" in the
tables and is listed under "Missing"; nothing here needs more than the standard library.

Inputs (all optional): run.txt (the run's settings), sections.tsv (section start
seconds), failed.txt, gpu.txt/gpu.csv (nvidia-smi), test-*.txt (the GPU test binaries),
gemm.json (bench_rules --gemm), torch_matmul.json (torch_step.py --matmul), gpu.json and
torch.json (the step grid), mnist-{mlp,lenet,dfa}.txt (the mnist example's output),
torch_mnist_{mlp,lenet}.json (torch_mnist_epoch.py).
"""

import json
import os
import re
import statistics
import sys

# The performance targets.
GEMM_TARGET_N, GEMM_TARGET_SHARE = 4096, 0.5
MNIST_TARGET_SPEEDUP = 5.0
DFA_TARGET_WIDTH, DFA_TARGET_BATCH, DFA_TARGET_DEPTH, DFA_TARGET_SPEEDUP = 1024, 128, 8, 1.5
BP_TARGET_WIDTHS, BP_TARGET_BATCH = (256, 1024), 128


class Report:
    def __init__(self, out):
        self.out = out
        self.missing = []

    def path(self, name):
        return os.path.join(self.out, name)

    def text(self, name, why):
        try:
            with open(self.path(name)) as f:
                return f.read()
        except OSError:
            if why:
                self.missing.append(f"{name}: {why}")
            return None

    def json(self, name, why):
        text = self.text(name, why)
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            self.missing.append(f"{name}: not JSON ({e})")
            return None


def fmt(v, spec=".1f", suffix=""):
    return "-" if v is None else format(v, spec) + suffix


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def median_after_first(values):
    later = values[1:] or values
    return statistics.median(later) if later else None


# --------------------------------------------------------------------------------------
# Readers


def read_settings(r):
    settings = {}
    for line in (r.text("run.txt", None) or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    return settings


def read_sections(r):
    """{name: seconds} from the start times in sections.tsv (the last entry is 'end')."""
    starts = []
    for line in (r.text("sections.tsv", None) or "").splitlines():
        name, _, t = line.partition("\t")
        try:
            starts.append((name, int(t)))
        except ValueError:
            continue
    return {name: t1 - t0 for (name, t0), (_, t1) in zip(starts, starts[1:])}


def read_device(r, grid, gemm):
    device = {}
    csv = r.text("gpu.csv", None)
    if csv:
        lines = [line for line in csv.splitlines() if line.strip()]
        if len(lines) >= 2:
            keys = [k.strip() for k in lines[0].split(",")]
            values = [v.strip() for v in lines[1].split(",")]
            device["nvidia_smi"] = dict(zip(keys, values))
    listed = r.text("gpu.txt", None)
    if listed and listed.strip():
        device["nvidia_smi_list"] = listed.strip().splitlines()
        m = re.match(r"GPU \d+: (.*?)(?: \(UUID.*)?$", device["nvidia_smi_list"][0])
        if m:
            device["name"] = m.group(1)
    for doc in (grid, gemm):
        if doc and doc.get("device"):
            device["adapter"] = doc["device"]
            break
    device.setdefault("name", device.get("adapter"))
    if device.get("name") is None:
        r.missing.append("device name: neither nvidia-smi nor a bench_rules report")
    return device


def read_tests(r):
    tests = {}
    for name in ("gpu_kernels", "gpu_training", "gpu_rules", "gpu_spatial"):
        text = r.text(f"test-{name}.txt", "GPU test output missing")
        if text is None:
            continue
        passed = failed = 0
        for m in re.finditer(r"test result: (\w+)\. (\d+) passed; (\d+) failed", text):
            passed += int(m.group(2))
            failed += int(m.group(3))
        ok = "test result:" in text and failed == 0 and "test result: FAILED" not in text
        tests[name] = {"passed": passed, "failed": failed, "ok": ok}
        if "test result:" not in text:
            r.missing.append(f"test-{name}.txt: no test summary (crashed?)")
    return tests


def read_gemm(r):
    ours = r.json("gemm.json", "bench_rules --gemm did not write it")
    torch = r.json("torch_matmul.json", "no torch.matmul figures (no torch or no CUDA)")
    rows = {}
    for g in (ours or {}).get("gemm", []):
        key = (g["m"], g["n"], g["k"])
        row = rows.setdefault(key, {"m": key[0], "n": key[1], "k": key[2], "ours": {},
                                    "best": None, "torch_gflops": None})
        if g["kernel"] == "auto":
            row["ours"][g["variant"]] = g["gflops"]
        if g["variant"] == "NN" and (row["best"] is None or g["gflops"] > row["best"]["gflops"]):
            row["best"] = {"kernel": g["kernel"], "gflops": g["gflops"]}
    for t in (torch or {}).get("matmul", []):
        key = (t.get("m", t["n"]), t["n"], t.get("k", t["n"]))
        row = rows.setdefault(key, {"m": key[0], "n": key[1], "k": key[2], "ours": {},
                                    "best": None, "torch_gflops": None})
        row["torch_gflops"] = t["gflops"]
    out = []
    for key in sorted(rows, key=lambda k: (k[0] != k[1] or k[1] != k[2], k)):
        row = rows[key]
        row["ratio_nn"] = ratio(row["ours"].get("NN"), row["torch_gflops"])
        out.append(row)
    return ours, torch, out


def read_grid(r):
    ours = r.json("gpu.json", "bench_rules step grid did not write it")
    torch = r.json("torch.json", "no PyTorch step grid (no torch or no CUDA)")
    key = lambda row: (row["width"], row["depth"], row["batch"])  # noqa: E731
    mine = {key(x): x for x in (ours or {}).get("rows", [])}
    theirs = {key(x): x for x in (torch or {}).get("rows", [])}
    rows = []
    for k in sorted(set(mine) | set(theirs)):
        a, b = mine.get(k, {}), theirs.get(k, {})
        row = {"width": k[0], "depth": k[1], "batch": k[2]}
        for rule in ("bp", "fa", "dfa"):
            o, t = a.get("ms", {}).get(rule), b.get("ms", {}).get(rule)
            row[rule] = {"ours_ms": o, "torch_ms": t, "speedup": ratio(t, o)}
        row["dfa_over_bp_ours"] = a.get("dfa_speedup")
        row["dfa_over_bp_torch"] = b.get("dfa_speedup")
        rows.append(row)
    return ours, torch, rows


EPOCH = re.compile(r"^epoch\s+(\d+)\s+loss\s+(\S+)\s+train acc\s+([\d.]+)%\s+test acc\s+"
                   r"([\d.]+)%\s+([\d.]+)s")
WORK = re.compile(r"^\s+(\d+) submits, (\d+) dispatches, ([\d.]+) KB uploaded, (\d+) B read")


def read_ours_mnist(r, name, why):
    text = r.text(name, why)
    if text is None:
        return None
    epochs, header = [], None
    for line in text.splitlines():
        if line.startswith("rule "):
            header = line.strip()
        m = EPOCH.match(line)
        if m:
            epochs.append({"epoch": int(m.group(1)), "train_loss": float(m.group(2)),
                           "train_accuracy": float(m.group(3)) / 100,
                           "test_accuracy": float(m.group(4)) / 100,
                           "seconds": float(m.group(5))})
            continue
        m = WORK.match(line)
        if m and epochs:
            epochs[-1].update(submits=int(m.group(1)), dispatches=int(m.group(2)),
                              kb_uploaded=float(m.group(3)), bytes_read_back=int(m.group(4)))
    if not epochs:
        r.missing.append(f"{name}: no epoch lines (the run failed?)")
        return None
    times = [e["seconds"] for e in epochs]
    images = re.search(r"(\d+) train / (\d+) test images", header or "")
    return {"header": header, "epochs": epochs, "best_seconds": min(times),
            "median_seconds": median_after_first(times),
            "train_images": int(images.group(1)) if images else None,
            "final_test_accuracy": epochs[-1]["test_accuracy"]}


def read_mnist(r):
    out = {}
    for model in ("mlp", "lenet"):
        ours = read_ours_mnist(r, f"mnist-{model}.txt", "our MNIST BP run missing")
        torch = r.json(f"torch_mnist_{model}.json",
                       "no PyTorch MNIST epochs (no torch or no CUDA)")
        entry = {"ours": ours, "torch": torch, "speedup": None}
        if ours and torch:
            entry["speedup"] = ratio(torch.get("median_seconds"), ours["median_seconds"])
            if ours.get("train_images") != torch.get("train_images"):
                r.missing.append(f"mnist {model}: ours trained on {ours.get('train_images')} "
                                 f"images, PyTorch on {torch.get('train_images')}")
        out[model] = entry
    out["dfa"] = read_ours_mnist(r, "mnist-dfa.txt", None)
    return out


# --------------------------------------------------------------------------------------
# Targets


def target(name, value, goal, passed, detail):
    return {"target": name, "value": value, "goal": goal,
            "pass": passed, "detail": detail}


def targets(gemm_rows, grid_rows, mnist):
    out = []
    sq = next((g for g in gemm_rows
               if g["m"] == g["n"] == g["k"] == GEMM_TARGET_N), None)
    share = sq and sq["ratio_nn"]
    out.append(target(
        f"GEMM n={GEMM_TARGET_N} (auto kernel, NN) >= {GEMM_TARGET_SHARE:.0%} of "
        "torch.matmul FP32", share, GEMM_TARGET_SHARE,
        None if share is None else share >= GEMM_TARGET_SHARE,
        None if share is None else f"{sq['ours'].get('NN'):.0f} vs "
        f"{sq['torch_gflops']:.0f} GFLOP/s"))

    s = mnist["mlp"]["speedup"]
    out.append(target(
        f"MLP MNIST epoch (batch 64) >= {MNIST_TARGET_SPEEDUP:g}x faster than PyTorch eager",
        s, MNIST_TARGET_SPEEDUP, None if s is None else s >= MNIST_TARGET_SPEEDUP,
        None if s is None else f"{mnist['mlp']['ours']['median_seconds']:.3f} s vs "
        f"{mnist['mlp']['torch']['median_seconds']:.3f} s"))

    dfa = [(g["depth"], g["dfa_over_bp_ours"]) for g in grid_rows
           if g["width"] == DFA_TARGET_WIDTH and g["batch"] == DFA_TARGET_BATCH
           and g["depth"] >= DFA_TARGET_DEPTH and g["dfa_over_bp_ours"] is not None]
    low = min((v for _, v in dfa), default=None)
    out.append(target(
        f"DFA step >= {DFA_TARGET_SPEEDUP:g}x faster than BP (width {DFA_TARGET_WIDTH}, "
        f"batch {DFA_TARGET_BATCH}, depth >= {DFA_TARGET_DEPTH}), every depth", low,
        DFA_TARGET_SPEEDUP, None if low is None else low >= DFA_TARGET_SPEEDUP,
        ", ".join(f"d={d}: {v:.2f}x" for d, v in dfa) or None))

    bp = [(g["width"], g["depth"], g["bp"]["speedup"]) for g in grid_rows
          if g["width"] in BP_TARGET_WIDTHS and g["batch"] == BP_TARGET_BATCH
          and g["bp"]["speedup"] is not None]
    low = min((v for *_, v in bp), default=None)
    seen = {w for w, *_ in bp}
    complete = all(w in seen for w in BP_TARGET_WIDTHS)
    out.append(target(
        "BP step faster than PyTorch eager BP (widths "
        f"{' and '.join(map(str, BP_TARGET_WIDTHS))}, batch {BP_TARGET_BATCH}), every depth",
        low, 1.0, None if low is None or (low > 1.0 and not complete) else low > 1.0,
        (", ".join(f"w={w} d={d}: {v:.2f}x" for w, d, v in bp)
         + ("" if complete or not bp else " (not every width measured)")) or None))
    return out


# --------------------------------------------------------------------------------------
# Markdown


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def markdown(doc):
    md = [f"# GPU run: {doc['device'].get('name') or 'unknown device'}", ""]
    dev = doc["device"]
    if dev.get("adapter"):
        md.append(f"wgpu adapter: {dev['adapter']}")
    if doc.get("torch_device"):
        md.append(f"PyTorch on: {doc['torch_device']}")
    smi = dev.get("nvidia_smi")
    if smi:
        md.append("nvidia-smi: " + ", ".join(f"{k} {v}" for k, v in smi.items()))
    s = doc["settings"]
    if s:
        md.append("settings: " + ", ".join(f"{k} {v}" for k, v in s.items() if v))
    if doc["sections"]:
        md.append("section seconds: " + ", ".join(f"{k} {v}"
                                                  for k, v in doc["sections"].items()))
    md.append("")

    md += ["## Targets", ""]
    md += table(["target", "value", "pass"], [
        [t["target"], "-" if t["value"] is None else
         (f"{t['value']:.0%}" if "GEMM" in t["target"] else f"{t['value']:.2f}x")
         + (f" ({t['detail']})" if t["detail"] else ""),
         {True: "PASS", False: "FAIL", None: "-"}[t["pass"]]] for t in doc["targets"]])
    md.append("")

    if doc["tests"]:
        md += ["## GPU tests", ""]
        md += table(["binary", "passed", "failed", "ok"],
                    [[k, v["passed"], v["failed"], "yes" if v["ok"] else "NO"]
                     for k, v in doc["tests"].items()])
        md.append("")

    md += ["## GEMM GFLOP/s (FP32; torch.matmul with TF32 off)", "",
           "m x n x k: an m x k times k x n product. Ours: the kernel the size rule picks "
           "(auto), per transpose variant, and the fastest forced kernel for NN.", ""]
    md += table(["m x n x k", "ours NN", "ours TN", "ours NT", "best kernel NN",
                 "torch.matmul", "ours NN / torch"],
                [[f"{g['m']}x{g['n']}x{g['k']}", fmt(g["ours"].get("NN"), ".0f"),
                  fmt(g["ours"].get("TN"), ".0f"), fmt(g["ours"].get("NT"), ".0f"),
                  "-" if g["best"] is None else
                  f"{g['best']['gflops']:.0f} ({g['best']['kernel']})",
                  fmt(g["torch_gflops"], ".0f"), fmt(g["ratio_nn"], ".0%")]
                 for g in doc["gemm"]])
    md.append("")

    md += ["## One training step, median ms (batch as shown; PyTorch eager, TF32 off)", "",
           "x = PyTorch ms / ours (> 1: ours faster); DFA/BP = BP ms / DFA ms.", ""]
    md += table(["width", "depth", "batch", "BP ours", "BP torch", "BP x", "DFA ours",
                 "DFA torch", "DFA x", "DFA/BP ours", "DFA/BP torch"],
                [[g["width"], g["depth"], g["batch"], fmt(g["bp"]["ours_ms"], ".3f"),
                  fmt(g["bp"]["torch_ms"], ".3f"), fmt(g["bp"]["speedup"], ".2f"),
                  fmt(g["dfa"]["ours_ms"], ".3f"), fmt(g["dfa"]["torch_ms"], ".3f"),
                  fmt(g["dfa"]["speedup"], ".2f"), fmt(g["dfa_over_bp_ours"], ".2f"),
                  fmt(g["dfa_over_bp_torch"], ".2f")] for g in doc["step_grid"]])
    md.append("")

    md += ["## MNIST epochs: BP, Adam 1e-3, batch 64 (PyTorch eager, data on the device)",
           "", "Seconds of training per epoch (evaluation not included): the median of "
           "the epochs after the first (the first when only one ran), and the best.", ""]
    rows = []
    for model, label in (("mlp", "MLP 784-800-800-10 tanh"), ("lenet", "LeNet-5")):
        e = doc["mnist"][model]
        o, t = e["ours"] or {}, e["torch"] or {}
        last = (o.get("epochs") or [{}])[-1]
        rows.append([
            label, o.get("train_images") or t.get("train_images") or "-",
            len(o.get("epochs", [])) or "-", fmt(o.get("median_seconds"), ".3f"),
            fmt(o.get("best_seconds"), ".3f"), fmt(t.get("median_seconds"), ".3f"),
            fmt(t.get("best_seconds"), ".3f"), fmt(e["speedup"], ".2f", "x"),
            fmt(o.get("final_test_accuracy") and 100 * o["final_test_accuracy"], ".2f", "%"),
            fmt(t.get("epochs") and 100 * t["epochs"][-1]["test_accuracy"], ".2f", "%"),
            "-" if "submits" not in last else
            f"{last['submits']} / {last['dispatches']}"])
    md += table(["net", "train images", "epochs", "ours s (median)", "ours s (best)",
                 "torch s (median)", "torch s (best)", "speedup", "test acc ours",
                 "test acc torch", "submits / dispatches per epoch"], rows)
    dfa = doc["mnist"].get("dfa")
    if dfa:
        md += ["", f"DFA run (the example's defaults): epochs: {len(dfa['epochs'])}, "
               f"median epoch {dfa['median_seconds']:.3f} s, final test accuracy "
               f"{100 * dfa['final_test_accuracy']:.2f}%."]
    md.append("")

    if doc["failed"] or doc["missing"]:
        md += ["## Missing", ""]
        md += [f"- failed: {line}" for line in doc["failed"]]
        md += [f"- {line}" for line in doc["missing"]]
        md.append("")
    return "\n".join(md)


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: gpu_report.py OUT (the folder gpu_session.sh run wrote)")
    out = sys.argv[1]
    if not os.path.isdir(out):
        sys.exit(f"gpu_report.py: {out} is not a directory")
    r = Report(out)
    settings = read_settings(r)
    sections = read_sections(r)
    tests = read_tests(r)
    gemm_doc, torch_matmul, gemm_rows = read_gemm(r)
    grid_doc, grid_torch, grid_rows = read_grid(r)
    mnist = read_mnist(r)
    device = read_device(r, grid_doc, gemm_doc)
    failed = [line for line in (r.text("failed.txt", None) or "").splitlines() if line]
    goals = targets(gemm_rows, grid_rows, mnist)
    for t in goals:
        if t["pass"] is None:
            r.missing.append(f"target without figures: {t['target']}")
    adapter = (device.get("adapter") or "").lower()
    if device.get("nvidia_smi_list") and any(
            word in adapter for word in ("llvmpipe", "lavapipe", "swiftshader", "cpu)")):
        r.missing.append(f"the crate ran on a software adapter ({device['adapter']}), "
                         "not on the GPU nvidia-smi lists: check the Vulkan driver (ICD)")
    doc = {"device": device, "settings": settings, "sections": sections, "tests": tests,
           "gemm": gemm_rows,
           "torch_device": next((d.get("device") for d in (torch_matmul, grid_torch)
                                 if d and d.get("device")), None),
           "step_grid": grid_rows, "mnist": mnist,
           "targets": goals,
           "failed": failed, "missing": r.missing}
    with open(r.path("report.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(r.path("report.md"), "w") as f:
        f.write(markdown(doc))
    print(f"wrote {r.path('report.json')} and {r.path('report.md')}")


if __name__ == "__main__":
    main()
