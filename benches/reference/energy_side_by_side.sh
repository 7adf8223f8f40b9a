#!/usr/bin/env bash
# Equilibrium propagation and predictive coding on the CPU, this crate beside PyTorch
# eager written as the published code loops, in one run on one machine: one training
# step each (README, "Energy-based and iterative learners").
#   bash benches/reference/energy_side_by_side.sh [PYTHON]   (PYTHON must have torch)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-python3}"
cargo build --release --quiet --example energy_step
echo "== CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for threads in "" 1; do
  echo "== threads: ${threads:-all}"
  env ${threads:+RAYON_NUM_THREADS=$threads} target/release/examples/energy_step --rule ep \
    --hidden 500 --activation sigmoid --batch 20 \
    --settings free_steps=20,nudged_steps=4,beta=0.2,symmetric=true
  "$PY" benches/reference/torch_energy_step.py --rule ep --hidden 500 --activation sigmoid \
    --batch 20 --free-steps 20 --nudged-steps 4 --beta 0.2 --symmetric ${threads:+--threads $threads}
  env ${threads:+RAYON_NUM_THREADS=$threads} target/release/examples/energy_step --rule pc \
    --hidden 256,256 --activation tanh --batch 64
  "$PY" benches/reference/torch_energy_step.py --rule pc --hidden 256,256 --activation tanh \
    --batch 64 ${threads:+--threads $threads}
done
