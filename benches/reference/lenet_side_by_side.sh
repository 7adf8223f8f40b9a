#!/usr/bin/env bash
# LeNet-5 on the CPU, this crate beside PyTorch eager, in one run on one machine: the
# training step (batch 64, SGD momentum 0.9, weight decay 1e-3) and a whole MNIST epoch.
#   bash benches/reference/lenet_side_by_side.sh [PYTHON]   (PYTHON must have torch)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-python3}"
cargo build --release --quiet --example lenet_step --example mnist
echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for threads in "" 1; do
  label="${threads:-all}"
  echo "== training step, threads: $label"
  env ${threads:+RAYON_NUM_THREADS=$threads} target/release/examples/lenet_step --rule bp,fa,dfa --repeats 50
  "$PY" benches/reference/torch_lenet.py --repeats 50 ${threads:+--threads $threads}
done
echo "== one MNIST epoch (60,000 images, batch 64, BP, SGD momentum 0.9)"
target/release/examples/mnist --model lenet --rule bp --epochs 1 --device cpu \
  --optimizer sgd --lr 0.01 --momentum 0.9 --weight-decay 0.001
"$PY" benches/reference/torch_lenet.py --mnist --epochs 1 --repeats 5
