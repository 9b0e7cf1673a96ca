#!/usr/bin/env bash
# Reproduce models/checkpoints/lewm_small_cnn_p6: models/checkpoints/lewm_small_cnn with its
# predictor trained alone on the frozen encoder's latents (train_predictor), grown from 4 to 6
# blocks, with rounds of planner data in between (each round: the current model's CEM plans
# played in the simulator, the search's path included). The encoder and so the planner's cost
# stay those of lewm_small_cnn. Times of the run that made it: models/README.md, "The committed
# checkpoints/lewm_small_cnn_p6".
#
# Input: the planner files of lewm_small_cnn's three rounds, which scripts/train_lewm_small_cnn.sh
# writes ($CHAIN/planner_round{1,2,3}.npz; run it first, or point CHAIN at your copy). The
# committed run used the files those rounds wrote in session 31 and started from the committed
# lewm_small_cnn, so a rerun reproduces the chain, with floats that may differ in the last bits.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BASE=${BASE:-models/checkpoints/lewm_small_cnn}
CHAIN=${CHAIN:-build/lewm_small_cnn_chain}
OUT=${OUT:-build/lewm_small_cnn_p6_chain}
THREADS=${THREADS:-2}
PATH_DATA=(--tasks 400 --iters 10 --candidates 4 --per-iter 3 --workers 2)
TRAIN=(--iters 4000 --batch 256 --rollout-steps 5 --mix-frac 0.5 --threads "$THREADS")

for r in 1 2 3; do
  [[ -f "$CHAIN/planner_round$r.npz" ]] || {
    echo "missing $CHAIN/planner_round$r.npz: run scripts/train_lewm_small_cnn.sh first" >&2
    exit 2
  }
done
mkdir -p "$OUT"
files=("$CHAIN"/planner_round{1,2,3}.npz)

# planner data of the base model: plain plans, a 30-iteration search, and the search's path
"$PY" -m hwgen.models.planner_data "$BASE" --tasks 400 --iters 10 --seed 3 --out "$OUT/base_400.npz"
"$PY" -m hwgen.models.planner_data "$BASE" --tasks 300 --iters 30 --seed 5 \
  --out "$OUT/base_it30_300.npz"
"$PY" -m hwgen.models.planner_data "$BASE" "${PATH_DATA[@]}" --seed 6 --out "$OUT/base_path_400.npz"
files+=("$OUT/base_400.npz" "$OUT/base_it30_300.npz" "$OUT/base_path_400.npz")

# predictor alone, 4 blocks
"$PY" -m hwgen.models.train_predictor "$BASE" "${TRAIN[@]}" --lr 5e-4 --seed 0 \
  --mix-data "${files[@]}" --out "$OUT/p4"
"$PY" -m hwgen.models.planner_data "$OUT/p4" "${PATH_DATA[@]}" --seed 7 --out "$OUT/p4_path_400.npz"
files+=("$OUT/p4_path_400.npz")

# grown to 6 blocks (adaLN-zero: the grown model starts as the 4-block one)
"$PY" -m hwgen.models.train_predictor "$OUT/p4" "${TRAIN[@]}" --lr 5e-4 --seed 0 \
  --predictor-layers 6 --mix-data "${files[@]}" --out "$OUT/p6a"
"$PY" -m hwgen.models.planner_data "$OUT/p6a" "${PATH_DATA[@]}" --seed 11 \
  --out "$OUT/p6a_path_400.npz"
files+=("$OUT/p6a_path_400.npz")

"$PY" -m hwgen.models.train_predictor "$OUT/p6a" "${TRAIN[@]}" --lr 3e-4 --seed 1 \
  --mix-data "${files[@]}" --out "$OUT/p6b"
"$PY" -m hwgen.models.planner_data "$OUT/p6b" "${PATH_DATA[@]}" --seed 13 \
  --out "$OUT/p6b_path_400.npz"
files+=("$OUT/p6b_path_400.npz")

# the last two rounds train 6,000 steps (sessions 36 and 37; the earlier rounds' 4,000 gave
# less each time)
"$PY" -m hwgen.models.train_predictor "$OUT/p6b" "${TRAIN[@]/4000/6000}" --lr 3e-4 --seed 2 \
  --mix-data "${files[@]}" --out "$OUT/p6c"
"$PY" -m hwgen.models.planner_data "$OUT/p6c" "${PATH_DATA[@]}" --seed 17 \
  --out "$OUT/p6c_path_400.npz"
files+=("$OUT/p6c_path_400.npz")

"$PY" -m hwgen.models.train_predictor "$OUT/p6c" "${TRAIN[@]/4000/6000}" --lr 3e-4 --seed 3 \
  --mix-data "${files[@]}" --out "$OUT/p6d"
echo "final model: $OUT/p6d (copy model.safetensors and config.json to" \
  "models/checkpoints/lewm_small_cnn_p6, then run the figures' commands in models/README.md)"
