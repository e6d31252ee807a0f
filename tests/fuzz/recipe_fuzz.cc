// Recipe loader (core/recipe_loader.cc): TOML text and `--set` overrides. A recipe that cannot
// run must be refused with holo::Error (RecipeError naming the file, line and key); any other
// exception, sanitizer report or abort is a crash. A recipe that loads must come back from
// to_toml() as a recipe that loads to the same values (`holo recipe show`, the run directory's
// resolved recipe).
//
// Input: TOML text; the lines after a line "#--set" (a comment to TOML) are overrides, one per
// line, as given to `--set`. Relative `base` paths resolve in a folder holding base.toml and
// two recipes that extend each other (a cycle).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/recipe.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

/// to_toml's text without its comment lines, which name the sources and overrides.
std::string body(const std::string& toml) {
  std::string out;
  for (const auto& line : holo::fuzz::split(toml, "\n")) {
    if (!line.empty() && line[0] == '#') continue;
    out.append(line).push_back('\n');
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto& dir = holo::fuzz::scratch_dir("recipe");
  holo::fuzz::write_file(dir / "base.toml", "[optim]\nname = \"adamw\"\nlr = 0.001\n");
  holo::fuzz::write_file(dir / "cycle_a.toml", "base = \"cycle_b.toml\"\n");
  holo::fuzz::write_file(dir / "cycle_b.toml", "base = [\"base.toml\", \"cycle_a.toml\"]\n");
  std::filesystem::current_path(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string text = input;
  std::vector<std::string> overrides;
  const size_t marker = input.find("#--set\n");
  if (marker != std::string::npos && (marker == 0 || input[marker - 1] == '\n')) {
    text = input.substr(0, marker);
    for (const auto& line : holo::fuzz::split(std::string_view(input).substr(marker + 7), "\n")) {
      if (!line.empty()) overrides.emplace_back(line);
    }
  }
  holo::Recipe recipe;
  try {
    recipe = holo::parse_recipe(text, "fuzz.toml", overrides);
  } catch (const holo::Error&) {
    return 0;  // refused, with a message
  }
  const std::string resolved = holo::to_toml(recipe);
  holo::Recipe again;
  try {
    again = holo::parse_recipe(resolved, "resolved.toml");
  } catch (const holo::Error& e) {
    holo::fuzz::fail("the resolved recipe does not load again: " + std::string(e.what()) +
                     "\n--- resolved recipe ---\n" + resolved);
  }
  if (body(holo::to_toml(again)) != body(resolved)) {
    holo::fuzz::fail("the resolved recipe loads to other values:\n--- first ---\n" + resolved +
                     "\n--- loaded again ---\n" + holo::to_toml(again));
  }
  return 0;
}
