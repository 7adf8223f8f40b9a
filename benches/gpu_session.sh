#!/usr/bin/env bash
# The GPU measurements the README reports, in one go, for a machine with a GPU but no
# Rust toolchain: build a bundle of release binaries where cargo is, copy the repository
# (with the bundle) to the GPU machine, run them there.
#
#   benches/gpu_session.sh bundle [DIR]        # here: release examples + GPU test binaries
#   benches/gpu_session.sh run [DIR] [OUT]     # there: tests, GEMM, step grid, MNIST, report
#
# DIR defaults to .gpu-bundle (git-ignored), OUT to gpu-results. `run` needs a Vulkan
# loader and driver (wgpu), python3 with torch and CUDA for the PyTorch reference
# (skipped if missing), and the repository's data/mnist. It writes every result under
# OUT, then OUT/report.json and OUT/report.md (benches/reference/gpu_report.py); a
# section that fails is noted and the run goes on. Sized for well under 8 minutes on a
# data-centre GPU. QUICK=1 makes it a short smoke run (minutes on lavapipe).
# Overrides: WIDTHS, DEPTHS, GEMM_SIZES, GEMM_SHAPES, MNIST_EPOCHS (BP epochs, ours and
# PyTorch's), MNIST_LIMIT (training images), EPOCHS (the DFA run; 0 skips it),
# ONLY="tests gemm grid mnist dfa" (sections to run), PYTHON (the one with torch),
# TORCH_DEVICE (cuda; cpu checks the PyTorch side without a GPU), CMD_TIMEOUT (seconds
# one command may take, default 200; 600 with QUICK), BUDGET (seconds after which the
# sections left are skipped, default 400; 0: no limit).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
dir="${2:-.gpu-bundle}"

bundle() {
  mkdir -p "$dir"
  rm -f "$dir"/*.gz "$dir/COMMIT"
  cargo build --release --example bench_rules --example mnist
  cp target/release/examples/bench_rules target/release/examples/mnist "$dir/"
  { git rev-parse HEAD && git status --porcelain --untracked-files=no | head -20; } \
    > "$dir/COMMIT" 2>/dev/null || true
  # The GPU test binaries: cargo prints their paths as JSON messages.
  cargo test --release --no-run --test gpu_kernels --test gpu_training --test gpu_rules \
      --test gpu_spatial \
      --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' |
    while read -r name exe; do cp "$exe" "$dir/$name"; done
  # Symbols stripped and gzipped (57 MB -> about 20): the bundle and the repository
  # (13 MB, most of it data/mnist) must travel together in 64 MiB. `run` unpacks them.
  for f in "$dir"/*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    if command -v strip >/dev/null; then strip "$f"; fi
    gzip -9 -f "$f"
  done
  du -sh "$dir"
}

run() {
  local out="${3:-gpu-results}"
  mkdir -p "$out"
  rm -f "$out/sections.tsv" "$out/failed.txt"
  local widths="256,1024,4096" depths="2,4,8,16" sizes="1024,2048,4096"
  local shapes="256x128x256,1024x128x1024,4096x128x4096"
  local epochs=20 mnist_epochs=3 limit="" cmd_timeout=200 budget=400
  if [ -n "${QUICK:-}" ]; then
    widths="256"; depths="2,8"; sizes="256"; shapes="256x128x256"
    epochs=1; mnist_epochs=1; limit=2000; cmd_timeout=600; budget=0
  fi
  cmd_timeout="${CMD_TIMEOUT:-$cmd_timeout}" budget="${BUDGET:-$budget}"
  widths="${WIDTHS:-$widths}" depths="${DEPTHS:-$depths}"
  sizes="${GEMM_SIZES:-$sizes}" shapes="${GEMM_SHAPES-$shapes}" epochs="${EPOCHS:-$epochs}"
  mnist_epochs="${MNIST_EPOCHS:-$mnist_epochs}" limit="${MNIST_LIMIT:-$limit}"
  local only=" ${ONLY:-tests gemm grid mnist dfa} "
  local py="${PYTHON:-python3}" tdev="${TORCH_DEVICE:-cuda}"
  local lim=() t0=$SECONDS
  # The bundle's binaries, unpacked (gzip, or python3 where there is none).
  bin="$(mktemp -d "${TMPDIR:-/tmp}/gpu-bundle.XXXXXX")"
  trap 'rm -rf "$bin"' EXIT
  for f in "$dir"/*; do
    [ -f "$f" ] || continue
    local name="${f##*/}"
    case "$name" in
      *.gz) if command -v gzip >/dev/null; then gzip -dc "$f" > "$bin/${name%.gz}"
            else python3 -c 'import gzip,shutil,sys; shutil.copyfileobj(gzip.open(sys.argv[1]), sys.stdout.buffer)' "$f" > "$bin/${name%.gz}"; fi
            chmod +x "$bin/${name%.gz}" ;;
      COMMIT) ;;
      *) cp "$f" "$bin/$name" ;;
    esac
  done
  if [ ! -x "$bin/bench_rules" ] || [ ! -x "$bin/mnist" ]; then
    echo "warning: $dir holds no bench_rules/mnist: run 'benches/gpu_session.sh bundle' first"
  fi
  [ -n "$limit" ] && lim=(--train-limit "$limit")
  export PLASTICITY_REQUIRE_GPU=1 PYTHONUNBUFFERED=1

  # A section's start time goes to sections.tsv (the report turns them into durations).
  section() {
    printf '\n== [%s, +%ds] %s\n' "$(date +%T)" $((SECONDS - t0)) "$2"
    printf '%s\t%s\n' "$1" $((SECONDS - t0)) >> "$out/sections.tsv"
  }
  # A failing command is noted (failed.txt, the report) and the run goes on.
  try() {
    local rc=0
    "$@" || rc=$?
    if [ "$rc" != 0 ]; then
      echo "FAILED (exit $rc): $*" | tee -a "$out/failed.txt"
    fi
  }
  # Runs "$@" with its output in FILE (at most cmd_timeout seconds: a hung GPU command
  # must not eat the session), then shows its last lines.
  local limiter=()
  command -v timeout >/dev/null && limiter=(timeout -k 10 "$cmd_timeout")
  logged() {
    local file="$1" rc=0
    shift
    "${limiter[@]}" "$@" > "$file" 2>&1 || rc=$?
    [ "$rc" = 124 ] && echo "timed out after $cmd_timeout s" >> "$file"
    grep -v '^\s*$' "$file" | tail -n "${SHOW:-25}"
    return "$rc"
  }
  # A section runs if ONLY names it and the time budget is not spent.
  want() {
    [[ "$only" == *" $1 "* ]] || return 1
    if [ "$budget" -gt 0 ] && [ $((SECONDS - t0)) -ge "$budget" ]; then
      echo "skipped $1: the ${budget} s budget is spent" | tee -a "$out/failed.txt"
      return 1
    fi
  }

  {
    echo "quick=${QUICK:-}"
    echo "widths=$widths"; echo "depths=$depths"; echo "gemm_sizes=$sizes"
    echo "gemm_shapes=$shapes"; echo "mnist_epochs=$mnist_epochs"
    echo "mnist_limit=$limit"; echo "dfa_epochs=$epochs"; echo "torch_device=$tdev"
    echo "cmd_timeout=$cmd_timeout"; echo "budget=$budget"
    echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if [ -f "$dir/COMMIT" ]; then echo "commit=$(head -1 "$dir/COMMIT")"; fi
  } > "$out/run.txt"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L | tee "$out/gpu.txt" || true
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
      --format=csv > "$out/gpu.csv" 2>/dev/null || true
  fi
  local have_torch=1
  if [ "$tdev" = cpu ]; then
    "$py" -c 'import torch, numpy' 2>/dev/null || have_torch=0
  else
    "$py" -c 'import torch, numpy; assert torch.cuda.is_available()' 2>/dev/null || have_torch=0
  fi
  [ "$have_torch" = 1 ] || echo "note: no PyTorch ($tdev) in $py: the reference is skipped"

  if want tests; then
    section tests "GPU tests (kernels and whole steps against the CPU backend)"
    for t in gpu_kernels gpu_training gpu_rules gpu_spatial; do
      if [ -x "$bin/$t" ]; then
        SHOW=2 try logged "$out/test-$t.txt" "$bin/$t"
      else
        echo "$t: not in the bundle" | tee -a "$out/failed.txt"
      fi
    done
  fi

  if want gemm; then
    section gemm "GEMM GFLOP/s: WGSL vs torch.matmul (FP32, TF32 off)"
    # Square sizes (against cuBLAS), then the skinny shapes of a batch-128 step, each on
    # every GPU kernel: the data for the rule that picks one by size.
    SHOW=40 try logged "$out/gemm.txt" "$bin/bench_rules" --device gpu \
        --gemm "$sizes${shapes:+,$shapes}" --json "$out/gemm.json"
    if [ "$have_torch" = 1 ]; then
      try logged "$out/torch-matmul.txt" "$py" benches/reference/torch_step.py \
          --device "$tdev" --matmul "$sizes${shapes:+,$shapes}" --json "$out/torch_matmul.json"
    fi
  fi

  if want grid; then
    section grid "one training step: BP / FA / DFA over the grid (batch 128)"
    SHOW=40 try logged "$out/grid.txt" "$bin/bench_rules" --device gpu --widths "$widths" \
        --depths "$depths" --batch 128 --json "$out/gpu.json" --plot "$out/gpu-speedup.svg"
    if [ "$have_torch" = 1 ]; then
      section torch-grid "the same steps in PyTorch eager"
      SHOW=40 try logged "$out/torch-grid.txt" "$py" benches/reference/torch_step.py \
          --device "$tdev" --widths "$widths" --depths "$depths" --batch 128 \
          --json "$out/torch.json"
      try python3 benches/reference/compare.py "$out/gpu.json" "$out/torch.json" --rules bp,dfa
    fi
  fi

  if want mnist; then
    for model in mlp lenet; do
      section "mnist-$model" "MNIST epochs, $model, BP, Adam 1e-3, batch 64, epochs: $mnist_epochs"
      try logged "$out/mnist-$model.txt" "$bin/mnist" --device gpu --rule bp \
          --model "$model" --epochs "$mnist_epochs" --lr-decay 1 "${lim[@]}"
      if [ "$have_torch" = 1 ]; then
        section "torch-mnist-$model" "the same epochs in PyTorch eager, data on the device"
        try logged "$out/torch-mnist-$model.txt" "$py" \
            benches/reference/torch_mnist_epoch.py --device "$tdev" --model "$model" \
            --epochs "$mnist_epochs" "${lim[@]}" --json "$out/torch_mnist_$model.json"
      fi
    done
  fi

  if want dfa && [ "$epochs" -gt 0 ]; then
    section mnist-dfa "MNIST 784-800-800-10 on the GPU (defaults: DFA, Adam, batch 64, epochs: $epochs)"
    try logged "$out/mnist-dfa.txt" "$bin/mnist" --device gpu --epochs "$epochs" "${lim[@]}"
  fi

  section report "report: $out/report.json, $out/report.md"
  printf 'end\t%s\n' $((SECONDS - t0)) >> "$out/sections.tsv"
  try python3 benches/reference/gpu_report.py "$out"
  [ -f "$out/report.md" ] && cat "$out/report.md"
  echo "== done in $((SECONDS - t0)) s"
}

case "$mode" in
  bundle) bundle ;;
  run) run "$@" ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
