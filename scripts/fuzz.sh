#!/usr/bin/env bash
# Fuzzes the .npy reader of the examples (examples/common/npy.hpp) with libFuzzer + ASan +
# UBSan for a bounded time.
#
#   scripts/fuzz.sh [seconds]        default 60
#
# Builds fuzz/ as its own CMake project with clang++ in build-fuzz/ (separate from every other
# build), then runs build-fuzz/npy_fuzz over a working corpus in build-fuzz/corpus seeded from
# fuzz/corpus/npy (new inputs go to the working corpus, never into the source tree). A crash
# leaves its input as build-fuzz/crash-* and makes this script fail; reproduce it with
# build-fuzz/npy_fuzz build-fuzz/crash-<hash>.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: scripts/fuzz.sh [seconds]   (a positive integer, default 60)" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"

command -v clang++ >/dev/null || {
  echo "scripts/fuzz.sh: clang++ is missing (Debian: apt-get install -y clang)" >&2
  exit 1
}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

cmake -S "$root/fuzz" -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j1

mkdir -p "$build/corpus"
echo "fuzzing npy_fuzz for ${seconds} s"
"$build/npy_fuzz" -max_total_time="$seconds" -dict="$root/fuzz/npy.dict" \
  -artifact_prefix="$build/" -print_final_stats=1 "$build/corpus" "$root/fuzz/corpus/npy"
