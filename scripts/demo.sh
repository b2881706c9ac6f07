#!/usr/bin/env bash
# The main job end to end on a generated synthetic dataset (what `make demo` runs):
#   synthetic labelme data -> COCO train/val/test -> train the CPU config and the head grader
#   -> evaluate on test -> infer on sample folders (one holds a broken file) and on a generated microscope video
#   -> OUT/REPORT.md (tables, training plots, overlays).
# Usage: bash scripts/demo.sh [PYTHON] [OUT]      (defaults: .venv/bin/python output/demo)
# Knobs (environment): DEMO_IMAGES (160), DEMO_SIZE (192), DEMO_ITERS (the config's schedule),
# DEMO_VIDEO_FRAMES (60), DEMO_CROPS (24 single-head crops per val/test class-folder set),
# DEMO_GRADER_EPOCHS (40).
# Budget: <= 20 min on 2 CPU cores including `make install`; the step times land in REPORT.md.
set -euo pipefail

PY=${1:-.venv/bin/python}
OUT=${2:-output/demo}
IMAGES=${DEMO_IMAGES:-160}
SIZE=${DEMO_SIZE:-192}
FRAMES=${DEMO_VIDEO_FRAMES:-60}
CROPS=${DEMO_CROPS:-24}
GRADER_EPOCHS=${DEMO_GRADER_EPOCHS:-40}
CONFIG=configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml

START=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT/inputs"
TIMINGS="$OUT/timings.tsv"
printf 'step\tseconds\n' >"$TIMINGS"

step() {  # step NAME COMMAND...: run, time, and stop the demo with the step's name on failure
  local name=$1 t0
  shift
  echo "==> [demo] $name ($(($(date +%s) - START)) s elapsed)"
  t0=$(date +%s)
  if ! "$@"; then
    echo "demo: step '$name' failed (command: $*); see the output above" >&2
    exit 1
  fi
  printf '%s\t%s\n' "$name" "$(($(date +%s) - t0))" >>"$TIMINGS"
}

prepare_allow_skips() {  # prepare_data exits 1 when it skipped files: report them, keep going
  "$PY" tools/prepare_data.py "$@" || [ $? -eq 1 ]
}

# 1. data: labelme files, then validated COCO splits (model selection on val, report on test)
step "synthetic data" "$PY" tools/make_synthetic.py --output "$OUT/labelme" \
  --num-images "$IMAGES" --size "$SIZE" --seed 0
step "prepare data" prepare_allow_skips --input "$OUT/labelme" --output "$OUT/data" \
  --split 0.7,0.15,0.15 --seed 0

# 2. train the CPU config (its schedule is sized for this demo; best checkpoint on val segm/AP50)
SCHEDULE=()
if [ -n "${DEMO_ITERS:-}" ]; then  # shorter/longer runs for experiments: scale the schedule
  SCHEDULE=(SOLVER.MAX_ITER "$DEMO_ITERS" SOLVER.STEPS "($((DEMO_ITERS * 3 / 4)),)"
    SOLVER.WARMUP_ITERS "$((DEMO_ITERS / 5))" SOLVER.CHECKPOINT_PERIOD "$DEMO_ITERS"
    TEST.EVAL_PERIOD "$(((DEMO_ITERS + 1) / 2))")
fi
step "train" "$PY" tools/train_net.py --config-file "$CONFIG" \
  SPERM.DATA_ROOT "$OUT/data" OUTPUT_DIR "$OUT/train" SEED 0 "${SCHEDULE[@]}"

# 2b. train the head grader (second stage) on canonical crops of the same split's heads (best
#     checkpoint on val balanced accuracy); every later step grades heads with it (p_bad)
step "train grader" "$PY" tools/train_net.py --config-file configs/sperm_grader_cpu.yaml \
  SPERM.DATA_ROOT "$OUT/data" OUTPUT_DIR "$OUT/grader" SEED 0 SPERM.EPOCHS "$GRADER_EPOCHS"

# 3. evaluate on the held-out test split (threshold chosen on val)
step "evaluate" "$PY" tools/evaluate.py --run "$OUT/train" --grader "$OUT/grader" \
  --dataset sperm_test --val-dataset sperm_val --output "$OUT/eval"

# 3b. image-level grading on class folders of single-head crops (SMIDS style: normal/abnormal
#     folders mapped by the label map), threshold chosen on the val folders, reported on test
step "make crops" "$PY" tools/make_synthetic.py --output "$OUT/crops" --crops "$CROPS"
step "evaluate folders" "$PY" tools/evaluate.py --run "$OUT/train" --grader "$OUT/grader" \
  --folders "$OUT/crops/test" --val-folders "$OUT/crops/val" --label-map configs/labels/default.yaml \
  --output "$OUT/eval_folders"

# 4. inference inputs: two unseen sample folders (one with a corrupt file) and a video
make_inputs() {  # one step, so each part is timed and named when it fails
  "$PY" tools/make_synthetic.py --output "$OUT/inputs/sample_A" --num-images 8 --size "$SIZE" \
    --seed 101 &&
    "$PY" tools/make_synthetic.py --output "$OUT/inputs/sample_B" --num-images 8 --size 256 \
      --seed 202 &&
    rm -f "$OUT"/inputs/sample_*/*.json && # inference inputs are plain images
    printf 'not an image' >"$OUT/inputs/sample_B/corrupt_upload.png" &&
    "$PY" tools/make_synthetic.py --output "$OUT/inputs/microscope.mp4" --video "$FRAMES" --seed 7
}
step "make inputs" make_inputs

infer_allow_skips() {  # infer.py exits 1 when it skipped files (sample_B's corrupt upload)
  "$PY" tools/infer.py "$@" || [ $? -eq 1 ]
}
# Synthetic heads are ~34 px long: 0.12 um/px puts a normal one near the WHO median of 4.1 um.
step "infer" infer_allow_skips --run "$OUT/train" --grader "$OUT/grader" \
  --input "$OUT/inputs/sample_A" "$OUT/inputs/sample_B" "$OUT/inputs/microscope.mp4" \
  --output "$OUT/infer" --frame-stride 2 --um-per-px 0.12 --labelme

# 5. the report a person opens
TOTAL=$(($(date +%s) - START))
printf 'total (demo.sh)\t%s\n' "$TOTAL" >>"$TIMINGS"
step "report" "$PY" -m sperm_d2.demo_report "$OUT"
echo "==> [demo] done in $(($(date +%s) - START)) s: open $OUT/REPORT.md"
