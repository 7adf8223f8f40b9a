#!/usr/bin/env bash
# The CPU step-time tables, this crate beside NumPy (OpenBLAS) and PyTorch eager, in one
# run on one machine, each at its best (every core; NumPy on its best BLAS kernel, which
# numpy_step.py reports). Writes OUT/table.md and the raw files next to it.
#   bash benches/reference/cpu_side_by_side.sh [PYTHON] [OUT]   (PYTHON: numpy and torch)
# WIDTHS, DEPTHS and BATCH (default 256,1024,4096 / 2,4,8,16 / 128) choose the grid;
# about 20 minutes on 2 cores for the whole one. The tools take turns, one grid row at a
# time and ROUNDS times (default 3) on the fixed net, so that a machine whose speed
# drifts over minutes (a shared VM) slows them alike.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-python3}"
OUT="${2:-target/cpu-side-by-side}"
WIDTHS="${WIDTHS:-256,1024,4096}"
DEPTHS="${DEPTHS:-2,4,8,16}"
BATCH="${BATCH:-128}"
ROUNDS="${ROUNDS:-3}"
mkdir -p "$OUT"
cargo build --release --quiet --example bench_rules --example step_time --example mnist
bin=target/release/examples
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
  echo '```'
  echo
  echo "## Fixed net, BP and DFA beside NumPy, taking turns ($ROUNDS rounds, median ms of 50 steps)"
  echo
  echo "| round | BP plasticity | BP NumPy | BP × NumPy | DFA plasticity | DFA NumPy | DFA × NumPy |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  fixed=(--hidden 1024,1024,1024 --batch 128 --repeats 50 --warmup 5)
  # The median column of a rule's row in either tool's table.
  median() { awk -v r="$1" '$1 == "|" && $2 == r { print $4; exit }'; }
  for round in $(seq "$ROUNDS"); do
    ours="$("$bin/step_time" "${fixed[@]}" --rule bp,dfa)"
    theirs="$("$PY" benches/reference/numpy_step.py "${fixed[@]}")"
    awk -v n="$round" -v ob="$(median bp <<<"$ours")" -v nb="$(median bp <<<"$theirs")" \
      -v od="$(median dfa <<<"$ours")" -v nd="$(median dfa <<<"$theirs")" \
      'BEGIN { printf "| %d | %.2f | %.2f | %.2fx | %.2f | %.2f | %.2fx |\n", n, ob, nb, nb / ob, od, nd, nd / od }'
  done
  echo
  echo '```'
  "$PY" benches/reference/numpy_step.py --hidden 1024,1024,1024 --batch 128 --repeats 3 \
    | grep -E '^(numpy|net) '
  echo '```'
} | tee "$OUT/table.md"

rows="$OUT/rows"
rm -rf "$rows"
mkdir -p "$rows"
for width in ${WIDTHS//,/ }; do
  for depth in ${DEPTHS//,/ }; do
    row=(--widths "$width" --depths "$depth" --batch "$BATCH")
    at="$width-$depth"
    "$bin/bench_rules" --device cpu "${row[@]}" --rules bp,dfa --repeats 30 --budget-ms 3000 \
      --json "$rows/plasticity-$at.json"
    "$PY" benches/reference/numpy_step.py "${row[@]}" --repeats 10 --warmup 2 \
      --json "$rows/numpy-$at.json"
    "$PY" benches/reference/torch_step.py --device cpu "${row[@]}" --repeats 10 --warmup 2 \
      --json "$rows/torch-$at.json"
  done
done
# Each tool's rows in grid order (widths, then depths), as one file for compare.py.
for tool in plasticity numpy torch; do
  parts=()
  for width in ${WIDTHS//,/ }; do
    for depth in ${DEPTHS//,/ }; do parts+=("$rows/$tool-$width-$depth.json"); done
  done
  "$PY" benches/reference/merge_rows.py "$OUT/$tool.json" "${parts[@]}"
done

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
