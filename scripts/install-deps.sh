#!/usr/bin/env bash
# Installs the Debian packages attn needs to build and test, and only those that are missing
# (it runs apt-get only when something is). Safe to run any number of times.
#   scripts/install-deps.sh            compiler, cmake, ninja, Eigen, xsimd, GoogleTest,
#                                      Google Benchmark, pkg-config, clang-format-14
#   scripts/install-deps.sh --tidy     also clang-tidy-14
#   scripts/install-deps.sh --report   also python3 and gnuplot-nox (scripts/bench-report)
#   scripts/install-deps.sh --mpi      also libopenmpi-dev and openmpi-bin (attn::mpi, tests/dist)
#   scripts/install-deps.sh --fuzz     also clang and its libFuzzer runtime (scripts/fuzz.sh)
# Runs apt-get as root, or through sudo when not root.
set -euo pipefail

packages=(g++ cmake make ninja-build pkg-config libeigen3-dev libxsimd-dev libgtest-dev
  libbenchmark-dev clang-format-14)
for arg in "$@"; do
  case "$arg" in
    --tidy) packages+=(clang-tidy-14) ;;
    --report) packages+=(python3 gnuplot-nox) ;;
    --mpi) packages+=(libopenmpi-dev openmpi-bin) ;;
    --fuzz) packages+=(clang libclang-rt-14-dev) ;;
    -h | --help)
      sed -n '2,10s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *)
      echo "install-deps.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages are installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps.sh: missing ${missing[*]}, and no apt-get to install them (Debian only)" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install-deps.sh: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
