#!/usr/bin/env bash
# Reproduce models/checkpoints/lewm_small_cnn: a rollout-trained small_cnn LeWM, then three
# rounds of planner data (each round: the current model's CEM plans played in the simulator,
# then a fine-tune on the expert data plus every round's clips so far). The run that made it
# took 66 min of training and collection on the 2-core CPU, plus 263 s for the expert data
# (models/README.md, "The committed checkpoints/lewm_small_cnn"). Its config.json names that
# run's build/ folders and files; this script writes the same chain under $OUT (the first
# fine-tune ran with 1 torch thread, so floats may differ in the last bits).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/lewm_small_cnn_chain}
THREADS=${THREADS:-2}
COMMON=(--preset small_cnn --policy expert --episodes 1000 --steps 50 --batch 32
        --aux-state 8 --predictor-layers 4 --rollout-steps 5 --threads "$THREADS")
TASKS=(400 400 300)  # planner tasks per round, as run

mkdir -p "$OUT"
"$PY" -m hwgen.models.train_lewm "${COMMON[@]}" --iters 2000 --out "$OUT/round0"
files=()
for r in 1 2 3; do
  prev="$OUT/round$((r - 1))"
  data="$OUT/planner_round$r.npz"
  "$PY" -m hwgen.models.planner_data "$prev" --tasks "${TASKS[$((r - 1))]}" --iters 10 \
    --seed $((r - 1)) --out "$data"
  files+=("$data")
  "$PY" -m hwgen.models.train_lewm "${COMMON[@]}" --init "$prev" --mix-data "${files[@]}" \
    --mix-frac 0.3 --iters 1000 --lr 1e-3 --out "$OUT/round$r"
done
echo "final model: $OUT/round3 (copy model.safetensors and config.json to" \
  "models/checkpoints/lewm_small_cnn, then run the figures' commands in models/README.md)"
