#!/usr/bin/env bash
# The CPU step-time tables, this crate beside NumPy (OpenBLAS) and PyTorch eager, in one
# run on one machine, each at its best (every core; NumPy on its best BLAS kernel, which
# numpy_step.py reports). Writes OUT/table.md and the raw files next to it.
#   bash benches/reference/cpu_side_by_side.sh [PYTHON] [OUT]   (PYTHON: numpy and torch)
# WIDTHS, DEPTHS and BATCH (default 256,1024,4096 / 2,4,8,16 / 128) choose the grid;
# about 15 minutes on 2 cores for the whole one.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-python3}"
OUT="${2:-target/cpu-side-by-side}"
WIDTHS="${WIDTHS:-256,1024,4096}"
DEPTHS="${DEPTHS:-2,4,8,16}"
BATCH="${BATCH:-128}"
mkdir -p "$OUT"
cargo build --release --quiet --example bench_rules --example step_time --example mnist
bin=target/release/examples
grid=(--widths "$WIDTHS" --depths "$DEPTHS" --batch "$BATCH")
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"

# Peak resident memory of a command, in MB (GNU time), printed after its own output.
peak() {
  local label="$1"
  shift
  /usr/bin/time -f "%M" -o "$OUT/rss" "$@" >/dev/null
  echo "| $label | $(($(cat "$OUT/rss") / 1024)) MB |"
}

{
  echo "# CPU side by side: $cpu, $(date -u +%Y-%m-%d)"
  echo
  echo "## Fixed net 784-1024-1024-1024-10, batch 128"
  echo
  echo '```'
  "$bin/step_time" --hidden 1024,1024,1024 --batch 128 --rule all --breakdown --paired 10
  echo
  "$PY" benches/reference/numpy_step.py --hidden 1024,1024,1024 --batch 128
  echo '```'
} | tee "$OUT/table.md"

"$bin/bench_rules" --device cpu "${grid[@]}" --repeats 30 --budget-ms 3000 \
  --json "$OUT/plasticity.json"
"$PY" benches/reference/numpy_step.py "${grid[@]}" --repeats 10 --warmup 2 --json "$OUT/numpy.json"
"$PY" benches/reference/torch_step.py --device cpu "${grid[@]}" --repeats 10 --warmup 2 \
  --json "$OUT/torch.json"

widest="${WIDTHS##*,}" deepest="${DEPTHS##*,}" batch="${BATCH##*,}"
{
  echo
  echo "## Grid: width inputs, depth tanh hidden layers of width, 10 classes"
  echo
  "$PY" benches/reference/compare.py "$OUT/plasticity.json" "$OUT/numpy.json" "$OUT/torch.json" \
    --rules bp,dfa
  echo
  echo "## Peak resident memory"
  echo
  echo "| what | peak RSS |"
  echo "|---|---:|"
  one=(--widths "$widest" --depths "$deepest" --batch "$batch" --repeats 3 --warmup 1)
  peak "plasticity, width $widest depth $deepest BP steps" \
    "$bin/bench_rules" --device cpu "${one[@]}" --rules bp
  peak "NumPy, the same steps" "$PY" benches/reference/numpy_step.py "${one[@]}" --rule bp
  peak "PyTorch, the same steps" \
    "$PY" benches/reference/torch_step.py --device cpu "${one[@]}" --rule bp
  peak "plasticity, mnist example (784-800-800-10 DFA, 1 epoch, CPU)" \
    "$bin/mnist" --device cpu --epochs 1
} | tee -a "$OUT/table.md"
rm -f "$OUT/rss"
echo "wrote $OUT/table.md"
