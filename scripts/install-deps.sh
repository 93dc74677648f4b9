#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what longnet needs to build, test and benchmark, on Debian 12 or Ubuntu (apt):
# only the packages that are missing. Uses sudo when not root. Safe to run again.
#
#   scripts/install-deps.sh           install what is missing
#   scripts/install-deps.sh --check   list what is missing, install nothing (exit 1 if something is)
set -euo pipefail

# Required: compilers and CMake; Eigen (longnet/nn/), xsimd (SIMD kernels), Catch2 (tests),
# Google Benchmark (bench/), OpenMP for clang (libomp-dev; Debian 12: libomp-14-dev), nlohmann/json
# (tests, CLI), numpy (fixture scripts), Open MPI (the distributed tests and example; its mpirun
# wants an rsh agent even on one host, hence openssh-client), clang's compiler-rt (libclang-rt-dev:
# the sanitizer and libFuzzer runtimes of the fuzz preset; only a Recommends of clang, which
# --no-install-recommends skips). The PyTorch extension (python/, LONGNET_BUILD_PYTHON, built by CI):
# Debian's torch 1.13 (python3-torch, libtorch-dev), python3-dev, pybind11-dev, python3-pytest.
required=(
  build-essential cmake g++ clang libclang-rt-dev libomp-dev
  libeigen3-dev libxsimd-dev catch2 libbenchmark-dev nlohmann-json3-dev
  python3-numpy libopenmpi-dev openmpi-bin openssh-client
  python3-dev pybind11-dev python3-torch libtorch-dev python3-pytest
)
# Optional: oneDNN (longnet::onednn: the float GEMMs of longnet/nn on its runtime-dispatched kernels, 1.6x
# Eigen's at -march=native and 5x in a build without -march; also the dense-attention baseline of the
# benchmarks; without it the nn GEMMs are Eigen's); OpenBLAS (OpenMP build):
# torch's and numpy's matmuls otherwise run on the reference BLAS (python/bench's PyTorch baseline);
# SentencePiece (longnet::sentencepiece: --tokenizer in longnet_data, longnet_train and longnet_lm,
# longnet/text/tokenizer.hpp; without it the tools are byte level and refuse --tokenizer) and its tools
# (sentencepiece: spm_train makes a tokenizer; spm_encode/spm_decode are the tokenizer tests' reference).
optional=(libdnnl-dev libopenblas0-openmp libsentencepiece-dev sentencepiece)

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
  *) echo "install-deps.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps.sh: this script needs apt (Debian 12 or Ubuntu). Install the packages listed in it by hand." >&2
  exit 1
fi

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for p in "${required[@]}"; do is_installed "$p" || missing+=("$p"); done
missing_optional=()
for p in "${optional[@]}"; do is_installed "$p" || missing_optional+=("$p"); done

if [ "${#missing[@]}" -eq 0 ] && [ "${#missing_optional[@]}" -eq 0 ]; then
  echo "install-deps.sh: all dependencies are installed"
  exit 0
fi
echo "install-deps.sh: missing: ${missing[*]:-} ${missing_optional[*]:-}"
if [ "$check_only" -eq 1 ]; then
  [ "${#missing[@]}" -eq 0 ]
  exit $?
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps.sh: not root and sudo is not available; run as root" >&2
    exit 1
  fi
fi

apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@"; }

apt_get update
if [ "${#missing[@]}" -gt 0 ]; then
  apt_get install --no-install-recommends "${missing[@]}"
fi
# Optional packages one by one: one that does not exist on this release must not stop the rest.
for p in "${missing_optional[@]}"; do
  apt_get install --no-install-recommends "$p" || echo "install-deps.sh: optional package $p not installed (longnet builds and runs without it)"
done
echo "install-deps.sh: done"
