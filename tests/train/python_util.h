#pragma once
// Runs reference computations in /usr/bin/python3 (scikit-learn, torch, scipy): the script is
// written to a file in the test's folder and prints its results to a file read back here.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace holo::testing {

inline constexpr const char* kReferencePython = "/usr/bin/python3";

/// True when the reference Python exists; tests skip with a reason otherwise.
inline bool have_reference_python() { return std::filesystem::exists(kReferencePython); }

/// Runs `script` with OUT bound to the path of an output file; returns that file's contents.
/// Fails the test (and returns "") when Python exits non-zero.
inline std::string run_python(const std::string& dir, const std::string& script) {
  const std::string path = dir + "/reference.py";
  const std::string out = dir + "/reference.out";
  std::ofstream(path) << "import sys\nOUT = sys.argv[1]\n" << script;
  const auto r = run_command(std::string(kReferencePython) + " " + path + " " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code != 0) return "";
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Whitespace-separated numbers of `text`.
inline std::vector<double> parse_numbers(const std::string& text) {
  std::vector<double> v;
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) v.push_back(tok == "nan" ? std::nan("") : std::stod(tok));
  return v;
}

}  // namespace holo::testing
