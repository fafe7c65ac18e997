#!/usr/bin/env bash
# Installs the Debian 12 packages cnnviz needs, only those that are missing.
# Safe to run again: with everything present it does nothing and asks no archive.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config git
  libtorch-dev libopenblas0-pthread
  python3 python3-dev python3-venv python3-pip python3-setuptools python3-wheel
  python3-torch python3-torchvision python3-numpy python3-pil python3-scipy
  python3-matplotlib python3-ipywidgets python3-nbclient python3-ipykernel
  python3-tqdm python3-pytest
  python3-flask python3-h5py jupyter-notebook
  chromium chromium-driver python3-selenium
  pybind11-dev libstb-dev libxtensor-dev doctest-dev libbenchmark-dev
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
