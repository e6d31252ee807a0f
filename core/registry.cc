#include "core/registry.h"

#include <map>
#include <mutex>

#include "core/error.h"

namespace holo {
namespace {

struct Catalogue {
  std::mutex mutex;
  std::map<std::string, std::vector<Choice>> choices;
};

Catalogue& catalogue() {
  static Catalogue c;
  return c;
}

}  // namespace

void add_choice(const std::string& key, const Choice& choice) {
  auto& c = catalogue();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto& list = c.choices[key];
  for (const auto& existing : list) {
    HOLO_CHECK(existing.name != choice.name, key + " = \"" + choice.name + "\" is registered twice");
  }
  list.push_back(choice);
}

std::vector<Choice> registered_choices(const std::string& key) {
  auto& c = catalogue();
  std::lock_guard<std::mutex> lock(c.mutex);
  const auto it = c.choices.find(key);
  return it == c.choices.end() ? std::vector<Choice>{} : it->second;
}

std::vector<std::string> registered_names(const std::string& key) {
  std::vector<std::string> names;
  for (const auto& c : registered_choices(key)) names.push_back(c.name);
  return names;
}

std::string registered_list(const std::string& key) {
  std::string all;
  for (const auto& n : registered_names(key)) all += (all.empty() ? "" : ", ") + n;
  return all;
}

void throw_unknown_choice(const std::string& key, const std::string& noun, const std::string& name) {
  const auto dot = key.find('.');
  throw RecipeError("[" + key.substr(0, dot) + "]", 0, 0, key,
                    "unknown " + noun + " \"" + name + "\" (" + registered_list(key) + ")");
}

}  // namespace holo
