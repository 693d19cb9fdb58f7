#!/usr/bin/env bash
# Builds and runs the attn demo (examples/): installs missing Debian packages, configures a
# Release build in build/ (examples only), builds attn_demo and runs it. Arguments go to
# attn_demo.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh

if [ ! -f examples/CMakeLists.txt ]; then
  echo "demo.sh: examples/ has no CMakeLists.txt yet: nothing to run" >&2
  exit 1
fi

generator=()
[ -f build/CMakeCache.txt ] || generator=(-G Ninja)
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DATTN_BUILD_TESTS=OFF \
  -DATTN_BUILD_BENCH=OFF -DATTN_BUILD_EXAMPLES=ON
cmake --build build --target attn_demo -j "${ATTN_JOBS:-2}" ||
  { echo "demo.sh: could not build attn_demo (see above)" >&2; exit 1; }

demo=build/examples/attn_demo
if [ ! -x "$demo" ]; then
  echo "demo.sh: $demo was not built (is attn_demo defined in examples/CMakeLists.txt?)" >&2
  exit 1
fi
echo "==== $demo $*"
exec "$demo" "$@"
