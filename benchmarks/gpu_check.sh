#!/usr/bin/env bash
# The GPU check on the device machine (benchmarks/results/gpu/README.md): installs the carried
# wheels (.whl/, from `python benchmarks/gpu_check.py --prepare`) into /tmp/site, puts them and
# this repo on PYTHONPATH, checks that rela_hf imports, then runs benchmarks/gpu_check.py.
#
#   run(carry=[".gpu_check", ".whl"], timeout_s=600, command="bash benchmarks/gpu_check.sh")
#
# Writes results.json, results.md and gpu_check.log to $OUT (default: benchmarks/results/gpu);
# arguments after the script go to gpu_check.py (e.g. --parts trainer compile --cap compile=340).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"

shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ] || [ ! -d .gpu_check ]; then
  echo "gpu_check.sh: .whl/ or .gpu_check/ is missing: run 'python benchmarks/gpu_check.py --prepare'" \
       "where PyPI is reachable and carry both (carry=[\".gpu_check\", \".whl\"])." >&2
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "${wheels[@]}"
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1

# Fail in seconds, not minutes, when an import breaks (an older library on the machine).
python3 - <<'PY' 2>&1 | tee "$out/gpu_check.log"
import importlib.metadata as m
import torch, rela_hf.training, rela_hf.gpu_views, rela_hf.targets, rela_hf.evaluation  # noqa: F401
names = ("torch", "timm", "transformers", "datasets", "accelerate", "huggingface_hub", "pyarrow", "fsspec")
print("preflight:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU",
      ", ".join(f"{n} {m.version(n)}" for n in names))
PY
python3 benchmarks/gpu_check.py --output_dir "$out" "$@" 2>&1 | tee -a "$out/gpu_check.log"
