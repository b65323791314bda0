#!/usr/bin/env bash
# One-command GPU check: ResNet-50-FPN with mixed precision, every strategy, on digit scenes.
#
#   bench/gpu_smoke.sh [--dry-run] [--steps N] [--size PX] [--train N] [--backbone-weights NAME|PATH|none]
#                      [--no-speedups] OUT_DIR
#
# Makes digit scenes of SIZE px (default 512) under OUT_DIR/digits, drops 50% of the training boxes,
# trains R50-FPN with train.amp=true for STEPS (default 300) steps with each strategy (score_soft uses the
# baseline run as its prior), predicts and evaluates (VOC mAP@0.5 on the test scenes), then prints per
# strategy: steps/s, images/s, peak GPU memory and test mAP. Runs go to OUT_DIR/runs/<strategy>.
# --dry-run writes and checks OUT_DIR/gpu_smoke.yaml and prints the commands without running them (CPU).
# --no-speedups leaves train.cudnn_benchmark and train.channels_last off (default: on).
# Needs softsampling installed in the current Python (PYTHON=... to choose another interpreter) and a GPU;
# the default backbone weights name is downloaded once by torchvision (use a local path or `none` offline).
set -euo pipefail

PY="${PYTHON:-python}"
DRY=0
STEPS=300
SIZE=512
TRAIN=1000
WEIGHTS="ResNet50_Weights.IMAGENET1K_V2"
SPEEDUPS=true
OUT=""
usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --steps) STEPS="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --train) TRAIN="$2"; shift 2 ;;
    --backbone-weights) WEIGHTS="$2"; shift 2 ;;
    --no-speedups) SPEEDUPS=false; shift ;;
    -h|--help) usage ;;
    -*) echo "gpu_smoke.sh: unknown option $1" >&2; usage ;;
    *) [[ -z "$OUT" ]] || usage; OUT="$1"; shift ;;
  esac
done
[[ -n "$OUT" ]] || usage
for n in "$STEPS" "$SIZE" "$TRAIN"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_smoke.sh: --steps, --size and --train take positive integers, got $n" >&2; exit 2; }
done
if [[ "$WEIGHTS" == "none" ]]; then WEIGHTS_YAML="null"; else WEIGHTS_YAML="$WEIGHTS"; fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SS=("$PY" -m softsampling.cli)
HERE="$(cd "$(dirname "$0")" && pwd)"

run() {  # print a command; run it unless --dry-run
  echo "+ $*"
  if [[ "$DRY" -eq 0 ]]; then "$@"; fi
}

CONFIG="$OUT/gpu_smoke.yaml"
cat > "$CONFIG" <<YAML
# written by bench/gpu_smoke.sh: R50-FPN with mixed precision on ${SIZE} px digit scenes, ${STEPS} steps
seed: 0
data:
  format: coco
  train: $OUT/digits/annotations/train_drop50.json
  val: null
  test: $OUT/digits/annotations/test.json
model:
  name: resnet50_fpn
  backbone_weights: $WEIGHTS_YAML
  min_size: $SIZE
  max_size: $SIZE
train:
  iterations: $STEPS
  batch_size: 8
  lr: 0.02
  warmup_iterations: 50
  lr_steps: [0.8]
  checkpoint_every: $STEPS
  log_every: 10
  device: cuda
  amp: true
  deterministic: $([[ "$SPEEDUPS" == true ]] && echo false || echo true)
  cudnn_benchmark: $SPEEDUPS
  channels_last: $SPEEDUPS
YAML
# the config must load before anything runs (this part needs no GPU)
"$PY" -c 'import sys; from softsampling.engine.config import load_config; load_config(sys.argv[1])' "$CONFIG"
echo "config: $CONFIG"

if [[ -d "$OUT/digits" ]]; then
  echo "reusing $OUT/digits"
else
  run "${SS[@]}" data digits --out "$OUT/digits" --train "$TRAIN" --val 10 --test 200 --size "$SIZE" --seed 0
  run "${SS[@]}" curate --input "$OUT/digits/annotations/train.json" --format coco --drop-rate 0.5 --seed 0 \
      --out "$OUT/digits/annotations/train_drop50.json"
fi

STRATEGIES=(baseline hard_negative overlap_soft upper_bound score_soft)
for s in "${STRATEGIES[@]}"; do
  RUN="$OUT/runs/$s"
  extra=()
  if [[ "$s" == score_soft ]]; then extra=(--set "prior_run=$OUT/runs/baseline"); fi
  if [[ -f "$RUN/DONE" ]]; then
    echo "reusing $RUN"
  else
    rm -rf "$RUN"
    run "${SS[@]}" train --config "$CONFIG" --out "$RUN" --set "strategy=$s" ${extra[@]+"${extra[@]}"} --no-progress
  fi
  run "${SS[@]}" predict --run "$RUN" --images "$OUT/digits/images/test" --out "$RUN/preds" --force --no-progress
  run "${SS[@]}" evaluate --run "$RUN" --split test --metric voc --out "$RUN/eval_test.json" --force
done

run "$PY" "$HERE/gpu_smoke_summary.py" "$OUT/runs" "${STRATEGIES[@]}"
