#!/usr/bin/env bash
# The project's checks, as CI runs them (.ci/run):
#   1. formatting: clang-format-14 --dry-run --Werror over include/ tests/ bench/ examples/
#   2. Release build of everything with -Werror in build-release/, then ctest (every SIMD arch
#      this CPU runs, the contract tests, the packaging tests)
#   3. Debug (-O1) build of the tests and the demo with AddressSanitizer + UBSan in
#      build-asan/, then ctest without the packaging tests
# Installs missing Debian packages first (scripts/install-deps.sh). Exits non-zero on the
# first failure. Environment: ATTN_JOBS (default 2) parallel jobs for building and testing.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=${ATTN_JOBS:-2}
start=$SECONDS
step=setup
summary=()

trap 'echo "test.sh: FAILED in step \"$step\" after $((SECONDS - start))s" >&2' ERR

begin() {
  step=$1
  step_start=$SECONDS
  echo
  echo "==== test.sh: $step"
}
done_step() { summary+=("$step ${1:+($1) }$((SECONDS - step_start))s"); }

# Configure arguments; the generator only for a fresh build directory (an existing one keeps
# whatever it was configured with).
configure() {
  local dir=$1
  shift
  local generator=()
  [ -f "$dir/CMakeCache.txt" ] || generator=(-G Ninja)
  cmake -S . -B "$dir" "${generator[@]}" "$@"
}

# Runs ctest in build directory $1 with the remaining arguments; sets $ctest_counts to
# "N tests, M skipped".
run_ctest() {
  local dir=$1
  shift
  (cd "$dir" && ctest --output-on-failure -j "$jobs" "$@") | tee "$dir/ctest.log"
  local total skipped
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$dir/ctest.log")
  skipped=$(grep -c '\*\*\*Skipped' "$dir/ctest.log" || true)
  ctest_counts="${total:-?} tests, ${skipped} skipped"
}

begin deps
bash scripts/install-deps.sh
done_step

begin format
mapfile -t sources < <(find include tests bench examples -type f \( -name '*.hpp' -o -name '*.cpp' \) \
  2>/dev/null | sort)
clang-format-14 --dry-run --Werror "${sources[@]}"
done_step "${#sources[@]} files"

begin release
configure build-release -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON -DATTN_BUILD_TESTS=ON \
  -DATTN_BUILD_BENCH=ON -DATTN_BUILD_EXAMPLES=ON
cmake --build build-release -j "$jobs"
run_ctest build-release
done_step "$ctest_counts"

begin asan
sanitize="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
# -O1: Eigen and the kernels are unusably slow at -O0; ASan recommends -O1 anyway.
configure build-asan -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS=-O1 $sanitize" \
  "-DCMAKE_EXE_LINKER_FLAGS=$sanitize" -DATTN_WERROR=ON -DATTN_BUILD_TESTS=ON \
  -DATTN_BUILD_BENCH=OFF -DATTN_BUILD_EXAMPLES=ON
cmake --build build-asan -j "$jobs"
UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-asan -LE packaging
done_step "$ctest_counts"

trap - ERR
echo
printf -v steps '%s; ' "${summary[@]}"
echo "test.sh: OK in $((SECONDS - start))s: ${steps%; }"
