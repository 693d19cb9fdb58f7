#!/usr/bin/env bash
# Builds attn_bench (Release, -march=native) in build-bench/, runs every benchmark
# ATTN_BENCH_REPETITIONS (default 5) times into build-bench/bench.json, and prints the report of
# scripts/bench-report (also saved as build-bench/bench.md, with the chart build-bench/bench.png
# when gnuplot is available) and the performance page build-bench/perf/ (README.md with the
# plots of scripts/bench-report --out-dir; copy it to docs/perf/ to publish a run). Extra
# arguments go to attn_bench, e.g.
#   scripts/bench.sh --benchmark_filter='softmax|peak'
# Environment: ATTN_BENCH_BUILD_DIR (default build-bench), ATTN_BENCH_REPETITIONS,
# ATTN_BENCH_CMAKE_ARGS (extra configure arguments, e.g. -DATTN_USE_OPENMP=ON).
# Timings on a shared machine are noisy: compare the ratios within one run, not across runs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ATTN_BENCH_BUILD_DIR:-$root/build-bench}
reps=${ATTN_BENCH_REPETITIONS:-5}

# The report needs python3; the chart needs gnuplot. Install them only if missing.
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v gnuplot >/dev/null 2>&1 || missing+=(gnuplot-nox)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "bench.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
    echo "bench.sh: could not install ${missing[*]}" >&2
fi
command -v python3 >/dev/null 2>&1 || { echo "bench.sh: python3 is needed for the report" >&2; exit 1; }

# shellcheck disable=SC2086  # ATTN_BENCH_CMAKE_ARGS is a list of arguments
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DATTN_NATIVE=ON -DATTN_BUILD_BENCH=ON \
  -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_EXAMPLES=OFF ${ATTN_BENCH_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" --target attn_bench -j "$(nproc 2>/dev/null || echo 2)"

"$build/bench/attn_bench" --benchmark_out="$build/bench.json" --benchmark_out_format=json \
  --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true "$@"

echo
png=()
command -v gnuplot >/dev/null 2>&1 && png=(--png "$build/bench.png")
python3 "$root/scripts/bench-report" "$build/bench.json" "${png[@]}" --out-dir "$build/perf" \
  --command "scripts/bench.sh $*" | tee "$build/bench.md"
