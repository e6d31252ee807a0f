#pragma once
/// Registries: the one place each set of choices is listed. A layer registers what it offers
/// under the recipe key that selects it (model.name, task.kind, data.dataset, decode.device,
/// optim.name, schedule.kind): a name, one line of description, a listing group and the
/// layer's own entry (a factory, a builder, a formula). The recipe schema checks and documents
/// those keys against the names registered here (`registered_names`), so a choice is written
/// once, beside the code that implements it.
///
/// Registration is explicit, never by static initialisers (the layers are static libraries,
/// whose unreferenced objects the linker drops): each layer's registry is a function-local
/// static that fills itself on first use, and `holo` calls every layer's registration once
/// before it reads a recipe (train/registry.h, register_all). A binary that links only core
/// has nothing registered: the schema then accepts any string for those keys, and the layer
/// that looks the name up (Registry::at) refuses an unknown one naming the key and the
/// choices. No torch here.

#include <deque>
#include <functional>
#include <string>
#include <vector>

namespace holo {

/// One value a registry-bound recipe key accepts.
struct Choice {
  std::string name;         ///< "r3d18"
  std::string description;  ///< one line
  std::string group;        ///< listing group ("preset", "family", "segmentation"), or ""
};

/// Adds `choice` to the names `key` accepts. A name registered twice under one key is a
/// programming error (HOLO_CHECK).
void add_choice(const std::string& key, const Choice& choice);
/// Every choice of `key`, in registration order; empty when no layer registered the key.
std::vector<Choice> registered_choices(const std::string& key);
/// The names of registered_choices(key).
std::vector<std::string> registered_names(const std::string& key);
/// "a, b, c": the names `key` accepts, for messages.
std::string registered_list(const std::string& key);
/// Throws RecipeError for `key` = `name`, which no registry of the key holds.
[[noreturn]] void throw_unknown_choice(const std::string& key, const std::string& noun, const std::string& name);

/// One layer's registry for one recipe key. Several registries may feed one key (model.name:
/// the clip networks of models/ and the segmentation networks of train/); the schema sees
/// their union, each registry finds only its own entries.
template <class Entry>
class Registry {
 public:
  struct Item {
    Choice choice;
    Entry entry;
  };

  /// `noun` names one entry in messages ("network", "optimiser").
  Registry(std::string key, std::string noun) : key_(std::move(key)), noun_(std::move(noun)) {}

  Registry& add(const std::string& name, const std::string& description, Entry entry, const std::string& group = "") {
    Choice c{name, description, group};
    add_choice(key_, c);
    items_.push_back(Item{std::move(c), std::move(entry)});
    return *this;
  }

  /// The entry of `name`, or nullptr.
  const Entry* find(const std::string& name) const {
    for (const auto& i : items_) {
      if (i.choice.name == name) return &i.entry;
    }
    return nullptr;
  }

  /// The entry of `name`; a RecipeError naming the key and every registered name otherwise.
  const Entry& at(const std::string& name) const {
    if (const Entry* e = find(name)) return *e;
    throw_unknown_choice(key_, noun_, name);
  }

  const std::deque<Item>& items() const { return items_; }
  const std::string& key() const { return key_; }

 private:
  std::string key_, noun_;
  std::deque<Item> items_;  // stable addresses
};

}  // namespace holo
