#!/usr/bin/env bash
# The project's checks, as CI runs them (.ci/run):
#   1. formatting: clang-format-14 --dry-run --Werror over include/ tests/ bench/ examples/
#   2. Release build of everything with -Werror in build-release/, then ctest (every SIMD arch
#      this CPU runs, the contract tests, the packaging tests)
#   3. Debug (-O1) build of the tests and the demo with AddressSanitizer + UBSan in
#      build-asan/, for the widest SIMD arch (avx512),
#      then ctest without the packaging tests
#   4. ThreadSanitizer (-O1) build in build-tsan/ of only the threaded tests (attn_tests_threads:
#      the eight-user-thread concurrency test and the property harness, whose cases draw
#      threads = 1..4, 150 cases per family), run with TSAN_OPTIONS=halt_on_error=1
#   5. libFuzzer (clang, ASan + UBSan) on the examples' .npy reader for 60 s (scripts/fuzz.sh)
# Installs missing Debian packages first (scripts/install-deps.sh). Exits non-zero on the
# first failure. Environment: ATTN_JOBS (default 2) parallel jobs for building and testing;
# ATTN_FUZZ_SECONDS (default 60) for step 5.
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
bash scripts/install-deps.sh --mpi --fuzz
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
# -O1: Eigen and the kernels are unusably slow at -O0; ASan recommends -O1 anyway. One arch, the
# widest: its kernels are the ones with partial vectors, masked tails and register blocks, where
# an index can go wrong; the scalar fallback (one lane, no tails) and the middle two run in the
# Release stage. With scalar as well the whole script overran CI's 90 minutes.
configure build-asan -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS=-O1 $sanitize" \
  "-DCMAKE_EXE_LINKER_FLAGS=$sanitize" -DATTN_WERROR=ON -DATTN_BUILD_TESTS=ON \
  -DATTN_BUILD_BENCH=OFF -DATTN_BUILD_EXAMPLES=ON -DATTN_TEST_ARCHS=avx512
cmake --build build-asan -j "$jobs"
UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-asan -LE packaging
done_step "$ctest_counts"

begin tsan
# Only the tests that run threads: the std::thread executor (the default; OpenMP's runtime is
# not TSan-instrumented and would report false races) under 8 user threads and threads = 1..4.
tsan="-fsanitize=thread -fno-omit-frame-pointer"
configure build-tsan -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS=-O1 $tsan" \
  "-DCMAKE_EXE_LINKER_FLAGS=$tsan" -DATTN_WERROR=ON -DATTN_BUILD_TESTS=ON \
  -DATTN_BUILD_BENCH=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_TEST_ARCHS=avx512 \
  -DATTN_BUILD_THREAD_TESTS=ON
cmake --build build-tsan -j "$jobs" --target attn_tests_threads
TSAN_OPTIONS=halt_on_error=1 ATTN_FUZZ_ITERATIONS=150 run_ctest build-tsan -R '^threads/'
done_step "$ctest_counts"

begin fuzz
bash scripts/fuzz.sh "${ATTN_FUZZ_SECONDS:-60}"
done_step

trap - ERR
echo
printf -v steps '%s; ' "${summary[@]}"
echo "test.sh: OK in $((SECONDS - start))s: ${steps%; }"
