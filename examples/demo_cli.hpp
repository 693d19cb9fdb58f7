// The demo's plumbing, apart from the workloads: command-line flags, the machine's measured
// limits, the progress line and the result table (printed as markdown, written as JSON).
#pragma once

#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <attn/bench/peak.hpp>
#include <attn/exec/executor.hpp>
#include <attn/simd/arch.hpp>
#include <attn/version.hpp>

namespace demo {

/// A named problem size: every workload scales from it.
struct size_preset {
  const char* name;
  long seq;                   ///< prefill sequence length
  long head_dim;              ///< prefill head dim
  long context;               ///< decode: tokens already in the KV cache
  int decode_steps;           ///< decode: tokens generated (timed)
  int runs;                   ///< timed repetitions; the median is reported
  std::size_t bandwidth_mib;  ///< buffer of the bandwidth probe
};

inline constexpr size_preset sizes[] = {
    {"tiny", 256, 32, 2048, 4, 1, 64},  // ctest smoke test: seconds, even under ASan
    {"small", 1024, 64, 8192, 16, 3, 256},
    {"default", 2048, 64, 16384, 32, 5, 512},
    {"large", 4096, 128, 32768, 32, 5, 1024},
};

struct settings {
  size_preset size = sizes[2];
  int threads = attn::exec::hardware_threads();
  std::vector<std::string> variants;  ///< substrings; empty = every workload
  std::string json_path;

  /// Whether the workload named `name` runs under --variant.
  bool selects(std::string_view name) const {
    if (variants.empty()) return true;
    return std::any_of(variants.begin(), variants.end(), [&](const std::string& v) {
      return name.find(v) != std::string_view::npos;
    });
  }
};

inline void usage(std::FILE* to) {
  std::fprintf(
      to,
      "usage: attn_demo [--size tiny|small|default|large] [--threads N]\n"
      "                 [--variant SUBSTRING[,SUBSTRING...]] [--json FILE] [--help]\n"
      "\n"
      "Measures the machine's FMA peak and read bandwidth, runs attn's workloads and\n"
      "prints time, useful GFLOP/s, %% of the bounding machine limit, speed-up over plain\n"
      "Eigen and the max error against the double-precision reference.\n"
      "  --size     problem size (default: default, under a minute on 2 cores)\n"
      "  --threads  threads of the multi-threaded rows (default: all hardware threads)\n"
      "  --variant  run only workloads whose name contains one of the substrings,\n"
      "             e.g. --variant causal,decode\n"
      "  --json     also write the table and the machine limits to FILE as JSON\n");
}

/// Parses argv into cfg. Returns -1 to go on, or the exit code: 0 after --help, 2 on a bad flag.
inline int parse(int argc, char** argv, settings& cfg) {
  auto bad = [](const char* what, const char* arg) {
    std::fprintf(stderr, "attn_demo: %s '%s'\n\n", what, arg);
    usage(stderr);
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage(stdout);
      return 0;
    }
    const bool takes_value =
        flag == "--size" || flag == "--threads" || flag == "--variant" || flag == "--json";
    if (!takes_value) return bad("unknown argument", argv[i]);
    if (i + 1 == argc) return bad("missing value after", argv[i]);
    const char* value = argv[++i];
    if (flag == "--size") {
      const auto* it = std::find_if(std::begin(sizes), std::end(sizes), [&](const size_preset& s) {
        return s.name == std::string_view(value);
      });
      if (it == std::end(sizes)) return bad("unknown size", value);
      cfg.size = *it;
    } else if (flag == "--threads") {
      char* end = nullptr;
      const long n = std::strtol(value, &end, 10);
      if (end == value || *end != '\0' || n < 1 || n > 1024) return bad("bad thread count", value);
      cfg.threads = static_cast<int>(n);
    } else if (flag == "--variant") {
      std::string list = value;
      for (std::size_t start = 0; start <= list.size();) {
        const std::size_t comma = std::min(list.find(',', start), list.size());
        if (comma > start) cfg.variants.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
      if (cfg.variants.empty()) return bad("empty variant list", value);
    } else {
      cfg.json_path = value;
    }
  }
  return -1;
}

/// The machine's limits, measured once at start-up with the same SIMD arch as the kernels.
struct machine {
  double fma1 = 0, fma_all = 0, bw1 = 0, bw_all = 0;
  int threads = 1;

  static machine measure(int threads, std::size_t bandwidth_mib) {
    std::fprintf(stderr, "measuring the machine's FMA peak and read bandwidth...\n");
    machine m;
    m.threads = threads;
    m.fma1 = attn::bench::measure_fma_peak(1);
    m.fma_all = threads > 1 ? attn::bench::measure_fma_peak(threads) : m.fma1;
    m.bw1 = attn::bench::measure_read_bandwidth(1, bandwidth_mib);
    m.bw_all = threads > 1 ? attn::bench::measure_read_bandwidth(threads, bandwidth_mib) : m.bw1;
    return m;
  }
  double fma_gflops(int t) const { return t == 1 ? fma1 : fma_all; }
  double bandwidth_gbps(int t) const { return t == 1 ? bw1 : bw_all; }
};

/// One line of the result table.
struct row {
  std::string variant, shape;
  int threads = 1;
  double seconds = 0, gflops = 0;
  const char* limit = "FMA";  ///< the machine limit `fraction` refers to: "FMA" or "BW"
  double fraction = 0;
  double vs_eigen = 0;  ///< 0: no Eigen counterpart
  double max_error = 0;
};

class table {
 public:
  std::vector<row> rows;

  /// "[3] softmax causal, 2 threads..." on stderr, overwritten in place on a terminal.
  void progress(const std::string& name, int threads) {
    const bool tty = isatty(fileno(stderr)) != 0;
    std::fprintf(stderr, "%s[%zu] %s, %d thread%s...%s", tty ? "\r\033[K" : "", rows.size() + 1,
                 name.c_str(), threads, threads == 1 ? "" : "s", tty ? "" : "\n");
    std::fflush(stderr);
  }

  void add(row r) { rows.push_back(std::move(r)); }

  void print() const {
    if (isatty(fileno(stderr)) != 0) std::fprintf(stderr, "\r\033[K");
    std::printf("| %-24s | %-22s | threads | %9s | %8s | %% of limit | vs Eigen | max error |\n",
                "variant", "shape", "ms", "GFLOP/s");
    std::printf("|%s|%s|--------:|----------:|---------:|-----------:|---------:|----------:|\n",
                std::string(26, '-').c_str(), std::string(24, '-').c_str());
    for (const row& r : rows) {
      char versus[16] = "";
      if (r.vs_eigen > 0) std::snprintf(versus, sizeof versus, "%.1fx", r.vs_eigen);
      std::printf("| %-24s | %-22s | %7d | %9.3f | %8.1f | %5.1f%% %-3s | %8s | %9.1e |\n",
                  r.variant.c_str(), r.shape.c_str(), r.threads, r.seconds * 1e3, r.gflops,
                  100.0 * r.fraction, r.limit, versus, r.max_error);
    }
  }

  bool write_json(const std::string& path, const machine& m) const {
    std::ofstream out(path);
    out << "{\n  \"attn_version\": \"" << attn::version << "\",\n  \"simd_arch\": \""
        << attn::simd::arch_name<attn::simd::default_arch>() << "\",\n  \"machine\": {"
        << "\"fma_gflops_1\": " << m.fma1 << ", \"fma_gflops_all\": " << m.fma_all
        << ", \"bandwidth_gbps_1\": " << m.bw1 << ", \"bandwidth_gbps_all\": " << m.bw_all
        << ", \"threads\": " << m.threads << "},\n  \"rows\": [";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const row& r = rows[i];
      out << (i ? ",\n" : "\n") << "    {\"variant\": \"" << r.variant << "\", \"shape\": \""
          << r.shape << "\", \"threads\": " << r.threads << ", \"seconds\": " << r.seconds
          << ", \"gflops\": " << r.gflops << ", \"limit\": \"" << r.limit
          << "\", \"fraction_of_limit\": " << r.fraction << ", \"vs_eigen\": " << r.vs_eigen
          << ", \"max_error\": " << r.max_error << "}";
    }
    out << "\n  ]\n}\n";
    return static_cast<bool>(out);
  }
};

}  // namespace demo
