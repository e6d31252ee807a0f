#!/usr/bin/env bash
# Installs everything Holo needs on a Debian 12 machine. Idempotent: when every package is
# present it changes nothing and calls no network. Pass --check to only list what is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build ccache pkg-config clang-format git
  # tensors
  libtorch-dev
  # process launch and CPU collectives
  openmpi-bin libopenmpi-dev libpmix-dev
  # decoding
  ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  # feature store, recipes, CLI, logs
  libhdf5-dev hdf5-tools libxxhash-dev libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  # tests
  libgtest-dev libgmock-dev googletest
  # TensorBoard event files (protobuf), and reading them back in the tests
  libprotobuf-dev protobuf-compiler python3-protobuf
  # scheduler for the slurm tests
  slurm-wlm slurm-client munge
  # network, UTS and mount namespaces of the multi-node local cluster (ip, unshare, nsenter)
  iproute2 util-linux
  # Python side for baselines in bench/ and for checking our files open in Python
  python3-torch python3-torchvision python3-av python3-h5py python3-numpy python3-sklearn
  # plots (cairo, and the font they are drawn in), process tools
  libcairo2-dev fonts-dejavu-core procps
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${1:-}" = "--check" ]; then
  printf '%s\n' "${missing[@]}"
  exit 0
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
