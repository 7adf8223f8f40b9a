#!/usr/bin/env bash
# The GPU measurements the README reports, in one go, for a machine with a GPU but no
# Rust toolchain: build a bundle of release binaries where cargo is, copy the repository
# (with the bundle) to the GPU machine, run them there.
#
#   benches/gpu_session.sh bundle [DIR]        # here: release examples + GPU test binaries
#   benches/gpu_session.sh run [DIR] [OUT]     # there: tests, GEMM, step grid, MNIST
#
# DIR defaults to .gpu-bundle (git-ignored), OUT to gpu-results. `run` needs a Vulkan
# loader and driver (wgpu), python3 with torch for the PyTorch reference (skipped if
# missing), and the repository's data/mnist. QUICK=1 makes it a short smoke run;
# WIDTHS, DEPTHS, GEMM_SIZES and EPOCHS override the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
dir="${2:-.gpu-bundle}"

bundle() {
  mkdir -p "$dir"
  cargo build --release --example bench_rules --example mnist
  cp target/release/examples/bench_rules target/release/examples/mnist "$dir/"
  # The GPU test binaries: cargo prints their paths as JSON messages.
  cargo test --release --no-run --test gpu_kernels --test gpu_training --test gpu_rules \
      --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' |
    while read -r name exe; do cp "$exe" "$dir/$name"; done
  # Symbols stripped: the bundle and the repository must travel together in 64 MiB.
  if command -v strip >/dev/null; then strip "$dir"/*; fi
  du -sh "$dir"
}

run() {
  local out="${3:-gpu-results}"
  mkdir -p "$out"
  local widths="256,1024,4096" depths="2,4,8,16" sizes="1024,2048,4096" epochs=20
  if [ -n "${QUICK:-}" ]; then
    widths="256"; depths="2,8"; sizes="1024"; epochs=1
  fi
  widths="${WIDTHS:-$widths}" depths="${DEPTHS:-$depths}"
  sizes="${GEMM_SIZES:-$sizes}" epochs="${EPOCHS:-$epochs}"
  export PLASTICITY_REQUIRE_GPU=1 PYTHONUNBUFFERED=1
  command -v nvidia-smi >/dev/null && nvidia-smi -L | tee "$out/gpu.txt"
  local have_torch=1
  python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || have_torch=0

  echo "== GPU tests (kernels and whole steps against the CPU backend)"
  for t in gpu_kernels gpu_training gpu_rules; do
    "$dir/$t" 2>&1 | tail -3
  done

  echo "== GEMM GFLOP/s: WGSL vs torch.matmul (FP32, TF32 off)"
  # Square sizes (against cuBLAS), then the skinny shapes of a batch-128 step, each on
  # every GPU kernel: the data for the rule that picks one by size.
  "$dir/bench_rules" --device gpu --gemm "$sizes,256x128x256,1024x128x1024,4096x128x4096" \
      --json "$out/gemm.json"
  if [ "$have_torch" = 1 ]; then
    python3 benches/reference/torch_step.py --matmul "$sizes" --json "$out/torch_matmul.json"
  fi

  echo "== one training step: BP / FA / DFA over the grid (batch 128)"
  "$dir/bench_rules" --device gpu --widths "$widths" --depths "$depths" --batch 128 \
      --json "$out/gpu.json" --plot "$out/gpu-speedup.svg"
  if [ "$have_torch" = 1 ]; then
    python3 benches/reference/torch_step.py --widths "$widths" --depths "$depths" \
        --batch 128 --json "$out/torch.json"
    python3 benches/reference/compare.py "$out/gpu.json" "$out/torch.json" --rules bp,dfa
  fi

  echo "== MNIST 784-800-800-10 on the GPU (defaults: DFA, Adam, batch 64)"
  "$dir/mnist" --device gpu --epochs "$epochs" 2>&1 | grep -v '^\s*$' | tail -25
}

case "$mode" in
  bundle) bundle ;;
  run) run "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
