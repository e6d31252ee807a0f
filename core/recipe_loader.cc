// TOML -> Recipe. The only translation unit that includes toml++.
//
// Each file is flattened into leaves ("optim.lr" -> node), bases first, so a later leaf replaces
// an earlier one: that is the deep merge. Leaves keep a pointer to their parsed node, hence to
// its file, line and column, for error messages.

#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "core/recipe.h"

namespace holo {
namespace fs = std::filesystem;
namespace {

struct Leaf {
  const toml::node* node = nullptr;
  std::string file;       // for messages: a path, or "--set a.b=v"
  int line = 0;           // of the key
  int column = 0;
  std::string dir;        // folder that relative paths resolve against
  size_t order = 0;       // first appearance, for messages in file order
};

struct Tree {
  std::vector<std::unique_ptr<toml::table>> keep;  // parsed documents the leaves point into
  std::map<std::string, Leaf> leaves;
  std::vector<std::string> sources;
  size_t next_order = 0;
};

const char* toml_type(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "bool";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

std::string unknown_key_message(const std::string& path) {
  std::string msg = "unknown key";
  const std::string hint = suggest_key(path);
  if (!hint.empty()) msg += " (did you mean '" + hint + "'?)";
  msg += "; `holo recipe doc` lists every key";
  return msg;
}

void flatten(const toml::table& t, const std::string& prefix, const std::string& file,
             const std::string& dir, Tree& tree) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    if (prefix.empty() && key == "base") continue;  // handled by the loader
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if (v.is_table()) {
      flatten(*v.as_table(), path, file, dir, tree);
      continue;
    }
    Leaf leaf;
    leaf.node = &v;
    leaf.file = file;
    leaf.line = static_cast<int>(k.source().begin.line);
    leaf.column = static_cast<int>(k.source().begin.column);
    leaf.dir = dir;
    auto it = tree.leaves.find(path);
    leaf.order = it == tree.leaves.end() ? tree.next_order++ : it->second.order;
    tree.leaves[path] = leaf;
  }
}

std::unique_ptr<toml::table> parse_text(const std::string& text, const std::string& name) {
  try {
    return std::make_unique<toml::table>(toml::parse(text, name));
  } catch (const toml::parse_error& e) {
    throw RecipeError(name, static_cast<int>(e.source().begin.line),
                      static_cast<int>(e.source().begin.column), "",
                      "TOML syntax error: " + std::string(e.description()));
  }
}

void load_into(const std::string& text, const std::string& name, const std::string& dir,
               std::vector<std::string>& chain, Tree& tree);

void load_file_into(const std::string& file, const std::string& from_file, int from_line,
                    int from_col, std::vector<std::string>& chain, Tree& tree) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(fs::absolute(file), ec);
  const std::string key = ec ? file : canon.string();
  if (std::find(chain.begin(), chain.end(), key) != chain.end()) {
    std::string cycle;
    for (const auto& c : chain) cycle += c + " -> ";
    throw RecipeError(from_file, from_line, from_col, "base",
                      "recipe inheritance cycle: " + cycle + key);
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    if (from_file.empty()) throw RecipeError(file, 0, 0, "", "cannot open recipe file");
    throw RecipeError(from_file, from_line, from_col, "base",
                      "cannot open base recipe '" + file + "'");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  chain.push_back(key);
  load_into(ss.str(), file, fs::path(key).parent_path().string(), chain, tree);
  chain.pop_back();
}

void load_into(const std::string& text, const std::string& name, const std::string& dir,
               std::vector<std::string>& chain, Tree& tree) {
  auto doc = parse_text(text, name);
  if (const toml::node* base = doc->get("base")) {
    std::vector<const toml::node*> items;
    if (base->is_string()) {
      items.push_back(base);
    } else if (const toml::array* arr = base->as_array()) {
      for (const auto& e : *arr) items.push_back(&e);
    }
    const auto& src = base->source();
    if (items.empty()) {
      throw RecipeError(name, static_cast<int>(src.begin.line), static_cast<int>(src.begin.column),
                        "base", std::string("expected a string or a list of strings, got ") +
                                    toml_type(*base));
    }
    for (const toml::node* item : items) {
      const auto& isrc = item->source();
      if (!item->is_string()) {
        throw RecipeError(name, static_cast<int>(isrc.begin.line),
                          static_cast<int>(isrc.begin.column), "base",
                          std::string("expected a string, got ") + toml_type(*item));
      }
      fs::path p(**item->as_string());
      if (p.is_relative()) p = fs::path(dir) / p;
      load_file_into(p.lexically_normal().string(), name, static_cast<int>(isrc.begin.line),
                     static_cast<int>(isrc.begin.column), chain, tree);
    }
  }
  flatten(*doc, "", name, dir, tree);
  tree.sources.push_back(name);
  tree.keep.push_back(std::move(doc));
}

/// Why `s` cannot stand in a TOML document as it is (a control character other than tab, or
/// bytes that are not UTF-8), or "". TOML files are checked by the parser; overrides are not
/// parsed as TOML when they are bare words.
std::string toml_text_problem(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return "holds a control character";
    const size_t n = c < 0x80 ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
    if (n == 0 || i + n > s.size()) return "is not UTF-8";
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return "is not UTF-8";
      cp = (cp << 6) | (b & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return "is not UTF-8";
    i += n;
  }
  return "";
}

void apply_override(const std::string& text, Tree& tree) {
  const std::string where = "--set " + text;
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw RecipeError(where, 0, 0, "", "expected KEY=VALUE, e.g. --set optim.lr=0.05");
  }
  // The override is written into the resolved recipe (to_toml), which must load again.
  if (const std::string problem = toml_text_problem(text); !problem.empty()) {
    throw RecipeError(where, 0, 0, "", "the override " + problem);
  }
  const std::string path = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  const KeyDef* key = find_key(path);
  if (key == nullptr) throw RecipeError(where, 0, 0, path, unknown_key_message(path));

  // The value is read as TOML; a bare word for a string key is taken as that string, and a
  // comma-separated list of bare words for a list of strings.
  std::unique_ptr<toml::table> doc;
  try {
    doc = std::make_unique<toml::table>(toml::parse("v = " + value, where));
  } catch (const toml::parse_error&) {
  }
  const bool wants_string = key->type == ValueType::kString;
  const bool wants_strings = key->type == ValueType::kStringList;
  if ((wants_string && (!doc || !(*doc)["v"].is_string())) ||
      (wants_strings && (!doc || !(*doc)["v"].is_array()))) {
    auto t = std::make_unique<toml::table>();
    if (wants_string) {
      t->insert("v", value);
    } else {
      toml::array arr;
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) {
        if (!item.empty()) arr.push_back(item);
      }
      t->insert("v", std::move(arr));
    }
    doc = std::move(t);
  }
  if (!doc) throw RecipeError(where, 0, 0, path, "value '" + value + "' is not valid TOML");
  Leaf leaf;
  leaf.node = doc->get("v");
  leaf.file = where;
  leaf.dir = fs::current_path().string();
  auto it = tree.leaves.find(path);
  leaf.order = it == tree.leaves.end() ? tree.next_order++ : it->second.order;
  tree.leaves[path] = leaf;
  tree.keep.push_back(std::move(doc));
}

template <class T>
std::optional<T> scalar(const toml::node& n) {
  if constexpr (std::is_same_v<T, double>) {
    if (n.is_integer()) return static_cast<double>(*n.value<int64_t>());
    if (n.is_floating_point()) return *n.value<double>();
    return std::nullopt;
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (n.is_integer()) return *n.value<int64_t>();
    return std::nullopt;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (n.is_boolean()) return *n.value<bool>();
    return std::nullopt;
  } else {
    if (n.is_string()) return *n.value<std::string>();
    return std::nullopt;
  }
}

template <class T>
std::optional<std::vector<T>> list(const toml::node& n) {
  const toml::array* arr = n.as_array();
  if (arr == nullptr) return std::nullopt;
  std::vector<T> out;
  for (const auto& e : *arr) {
    auto x = scalar<T>(e);
    if (!x) return std::nullopt;
    out.push_back(*x);
  }
  return out;
}

std::optional<Value> convert(const toml::node& n, ValueType t) {
  switch (t) {
    case ValueType::kBool: if (auto v = scalar<bool>(n)) return Value(*v); break;
    case ValueType::kInt: if (auto v = scalar<int64_t>(n)) return Value(*v); break;
    case ValueType::kFloat: if (auto v = scalar<double>(n)) return Value(*v); break;
    case ValueType::kString: if (auto v = scalar<std::string>(n)) return Value(*v); break;
    case ValueType::kIntList: if (auto v = list<int64_t>(n)) return Value(*v); break;
    case ValueType::kFloatList: if (auto v = list<double>(n)) return Value(*v); break;
    case ValueType::kStringList: if (auto v = list<std::string>(n)) return Value(*v); break;
  }
  return std::nullopt;
}

std::string describe(const toml::node& n) {
  if (const toml::array* arr = n.as_array()) {
    std::string kinds;
    for (const auto& e : *arr) {
      const std::string k = toml_type(e);
      if (kinds.find(k) == std::string::npos) kinds += (kinds.empty() ? "" : "/") + k;
    }
    return kinds.empty() ? "an empty array" : "an array of " + kinds;
  }
  return toml_type(n);
}

/// Relations between keys that single-key ranges cannot express.
void check_relations(const Recipe& r, const std::map<std::string, Leaf>& leaves) {
  auto fail = [&](const std::string& path, const std::string& msg) {
    auto it = leaves.find(path);
    if (it == leaves.end()) throw RecipeError("(defaults)", 0, 0, path, msg);
    throw RecipeError(it->second.file, it->second.line, it->second.column, path, msg);
  };
  if (r.transform.train_scale_min > r.transform.train_scale_max) {
    fail("transform.train_scale_min", "must not exceed transform.train_scale_max (" +
                                          std::to_string(r.transform.train_scale_max) + ")");
  }
  if (r.transform.crop_size > r.transform.train_scale_min) {
    fail("transform.crop_size", "must not exceed transform.train_scale_min (" +
                                    std::to_string(r.transform.train_scale_min) + ")");
  }
  if (r.transform.crop_size > r.transform.test_scale) {
    fail("transform.crop_size",
         "must not exceed transform.test_scale (" + std::to_string(r.transform.test_scale) + ")");
  }
  if (r.transform.mean.size() != 3) fail("transform.mean", "needs 3 values (R, G, B)");
  if (r.transform.std.size() != 3) fail("transform.std", "needs 3 values (R, G, B)");
  if (r.optim.betas.size() != 2) fail("optim.betas", "needs 2 values");
  if (r.sampling.test_crops == 2) fail("sampling.test_crops", "must be 1 or 3");
  if (r.schedule.kind == "multistep" && r.schedule.milestones.empty()) {
    fail("schedule.milestones", "multistep needs at least one milestone");
  }
}

Recipe resolve(Tree& tree, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_override(o, tree);

  std::vector<std::pair<std::string, const Leaf*>> ordered;
  for (const auto& [path, leaf] : tree.leaves) ordered.emplace_back(path, &leaf);
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.second->order < b.second->order; });

  Recipe r;
  for (const auto& [path, leaf] : ordered) {
    const KeyDef* key = find_key(path);
    if (key == nullptr) {
      throw RecipeError(leaf->file, leaf->line, leaf->column, path, unknown_key_message(path));
    }
    auto value = convert(*leaf->node, key->type);
    if (!value) {
      throw RecipeError(leaf->file, leaf->line, leaf->column, path,
                        std::string("expected ") + type_name(key->type) + ", got " +
                            describe(*leaf->node));
    }
    const std::string problem = check_value(*key, *value);
    if (!problem.empty()) throw RecipeError(leaf->file, leaf->line, leaf->column, path, problem);
    if (key->path_like) {
      auto& s = std::get<std::string>(*value);
      if (!s.empty() && fs::path(s).is_relative()) {
        s = (fs::path(leaf->dir) / s).lexically_normal().string();
      }
    }
    key->set(r, *value);
    r.key_sources[path] = KeySource{leaf->file, leaf->line, leaf->column};
  }
  check_relations(r, tree.leaves);
  r.sources = tree.sources;
  r.overrides = overrides;
  return r;
}

}  // namespace

void fail_at(const Recipe& recipe, const std::string& key, const std::string& message) {
  auto it = recipe.key_sources.find(key);
  if (it != recipe.key_sources.end()) {
    throw RecipeError(it->second.file, it->second.line, it->second.column, key, message);
  }
  const std::string where = recipe.sources.empty() ? std::string("recipe") : recipe.sources.back();
  throw RecipeError(where, 0, 0, key, message + " (" + key + " is not set in the recipe)");
}

Recipe load_recipe(const std::string& file, const std::vector<std::string>& overrides) {
  Tree tree;
  std::vector<std::string> chain;
  load_file_into(file, "", 0, 0, chain, tree);
  return resolve(tree, overrides);
}

Recipe parse_recipe(const std::string& toml_text, const std::string& name,
                    const std::vector<std::string>& overrides) {
  Tree tree;
  std::vector<std::string> chain;
  load_into(toml_text, name, fs::current_path().string(), chain, tree);
  return resolve(tree, overrides);
}

std::string to_toml(const Recipe& recipe) {
  std::ostringstream os;
  os << "# Resolved recipe";
  if (!recipe.sources.empty()) {
    os << " from";
    for (const auto& s : recipe.sources) os << " " << s;
  }
  os << "\n";
  for (const auto& o : recipe.overrides) os << "# --set " << o << "\n";
  for (const auto& [section, doc] : recipe_sections()) {
    os << "\n[" << section << "]\n";
    for (const auto& k : recipe_schema()) {
      if (k.path.compare(0, section.size() + 1, section + ".") != 0) continue;
      os << k.path.substr(section.size() + 1) << " = " << to_toml_text(k.get(recipe)) << "\n";
    }
  }
  return os.str();
}

}  // namespace holo
