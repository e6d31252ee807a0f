#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/recipe.h"
#include "core/registry.h"
#include "tests/test_util.h"

namespace holo {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

void write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

/// The RecipeError thrown by `f`, or a failed test.
template <class F>
RecipeError recipe_error(F&& f) {
  try {
    f();
  } catch (const RecipeError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a RecipeError";
  return RecipeError("", 0, 0, "", "");
}

TEST(Recipe, DefaultsWhenEmpty) {
  const Recipe r = parse_recipe("", "empty.toml");
  EXPECT_EQ(r.optim.lr, 0.1);
  EXPECT_EQ(r.model.name, "resnet3d");
  EXPECT_EQ(r.transform.mean.size(), 3u);
  EXPECT_EQ(r.sources, std::vector<std::string>{"empty.toml"});
}

TEST(Recipe, TypedValues) {
  const Recipe r = parse_recipe(R"(
[optim]
lr = 1          # an integer is a valid float
nesterov = false
[schedule]
kind = "multistep"
milestones = [10, 20]
[task]
kind = "finetune"
freeze = ["stem", "res2"]
)", "t.toml");
  EXPECT_DOUBLE_EQ(r.optim.lr, 1.0);
  EXPECT_FALSE(r.optim.nesterov);
  EXPECT_EQ(r.schedule.milestones, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(r.task.freeze, (std::vector<std::string>{"stem", "res2"}));
}

TEST(Recipe, UnknownKeyNamesFileLineColumnAndSuggests) {
  const auto e = recipe_error([] {
    parse_recipe("[optim]\nlr = 0.1\n  momentun = 0.9\n", "typo.toml");
  });
  EXPECT_EQ(e.file(), "typo.toml");
  EXPECT_EQ(e.line(), 3);
  EXPECT_EQ(e.column(), 3);
  EXPECT_EQ(e.key(), "optim.momentun");
  EXPECT_THAT(e.what(), AllOf(HasSubstr("typo.toml:3:3"), HasSubstr("optim.momentun"),
                              HasSubstr("unknown key"), HasSubstr("did you mean 'optim.momentum'")));
  EXPECT_EQ(e.exit_code(), 2);
}

TEST(Recipe, UnknownSection) {
  const auto e = recipe_error([] { parse_recipe("[optimiser]\nlr = 0.1\n", "s.toml"); });
  EXPECT_EQ(e.key(), "optimiser.lr");
  EXPECT_EQ(e.line(), 2);
  EXPECT_THAT(e.what(), HasSubstr("did you mean 'optim.lr'"));
}

TEST(Recipe, WrongTypeNamesExpectedAndActual) {
  const auto e = recipe_error([] { parse_recipe("[train]\nepochs = \"ten\"\n", "w.toml"); });
  EXPECT_EQ(e.key(), "train.epochs");
  EXPECT_EQ(e.line(), 2);
  EXPECT_THAT(e.what(), AllOf(HasSubstr("expected int"), HasSubstr("got string")));

  const auto f = recipe_error([] { parse_recipe("[train]\nepochs = 2.5\n", "w.toml"); });
  EXPECT_THAT(f.what(), AllOf(HasSubstr("expected int"), HasSubstr("got float")));

  const auto g = recipe_error([] { parse_recipe("[transform]\nmean = [0.1, \"x\", 0.2]\n", "w.toml"); });
  EXPECT_THAT(g.what(), AllOf(HasSubstr("expected list of float"), HasSubstr("float/string")));
}

TEST(Recipe, OutOfRangeAndChoices) {
  const auto e = recipe_error([] { parse_recipe("[optim]\nmomentum = 1.5\n", "r.toml"); });
  EXPECT_EQ(e.key(), "optim.momentum");
  EXPECT_THAT(e.what(), HasSubstr("above the maximum 1"));

  const auto c = recipe_error([] { parse_recipe("[train]\nprecision = \"fp64\"\n", "c.toml"); });
  EXPECT_THAT(c.what(), AllOf(HasSubstr("\"fp64\" is not one of"), HasSubstr("fp32, bf16, fp16")));

  const auto l = recipe_error([] { parse_recipe("[task]\nfreeze = [\"res9\"]\n", "l.toml"); });
  EXPECT_THAT(l.what(), HasSubstr("list element"));
}

TEST(Recipe, RelationsBetweenKeys) {
  const auto e = recipe_error([] {
    parse_recipe("[transform]\ntrain_scale_min = 200\ntrain_scale_max = 150\n", "rel.toml");
  });
  EXPECT_EQ(e.key(), "transform.train_scale_min");
  EXPECT_EQ(e.line(), 2);
  // model.depth's values depend on the family: models::resolve_model checks them (a ResNet's
  // 10-152, X3D's 26 or 55, a transformer's blocks); the recipe only bounds it.
  const auto d = recipe_error([] { parse_recipe("[model]\ndepth = 200\n", "d.toml"); });
  EXPECT_EQ(d.key(), "model.depth");
}

TEST(Recipe, SyntaxErrorHasPosition) {
  const auto e = recipe_error([] { parse_recipe("[optim]\nlr = = 3\n", "syn.toml"); });
  EXPECT_EQ(e.line(), 2);
  EXPECT_THAT(e.what(), HasSubstr("TOML syntax error"));
}

TEST(Recipe, InheritanceDeepMerges) {
  const std::string d = holo::testing::temp_dir();
  write(d + "/base/kinetics.toml", R"(
[data]
dataset = "kinetics"
root = "videos"
[optim]
lr = 0.1
momentum = 0.8
[model]
depth = 50
)");
  write(d + "/exp/child.toml", R"(
base = "../base/kinetics.toml"
[optim]
lr = 0.05
)");
  const Recipe r = load_recipe(d + "/exp/child.toml");
  EXPECT_DOUBLE_EQ(r.optim.lr, 0.05);       // child wins
  EXPECT_DOUBLE_EQ(r.optim.momentum, 0.8);  // sibling key of the same table kept
  EXPECT_EQ(r.model.depth, 50);
  EXPECT_EQ(r.data.dataset, "kinetics");
  // Relative paths resolve against the file that set them.
  EXPECT_EQ(r.data.root, std::filesystem::path(d + "/base/videos").lexically_normal().string());
  ASSERT_EQ(r.sources.size(), 2u);
  EXPECT_THAT(r.sources[0], HasSubstr("kinetics.toml"));
}

TEST(Recipe, MultipleBasesLaterWins) {
  const std::string d = holo::testing::temp_dir();
  write(d + "/a.toml", "[optim]\nlr = 0.3\nmomentum = 0.5\n");
  write(d + "/b.toml", "[optim]\nlr = 0.2\n");
  write(d + "/c.toml", "base = [\"a.toml\", \"b.toml\"]\n[train]\nepochs = 3\n");
  const Recipe r = load_recipe(d + "/c.toml");
  EXPECT_DOUBLE_EQ(r.optim.lr, 0.2);
  EXPECT_DOUBLE_EQ(r.optim.momentum, 0.5);
  EXPECT_EQ(r.train.epochs, 3);
}

TEST(Recipe, InheritanceCycleDetected) {
  const std::string d = holo::testing::temp_dir();
  write(d + "/a.toml", "base = \"b.toml\"\n");
  write(d + "/b.toml", "\nbase = \"a.toml\"\n");
  const auto e = recipe_error([&] { load_recipe(d + "/a.toml"); });
  EXPECT_EQ(e.key(), "base");
  EXPECT_EQ(e.line(), 2);
  EXPECT_THAT(e.what(), HasSubstr("inheritance cycle"));
}

TEST(Recipe, MissingBaseNamesIncludingFile) {
  const std::string d = holo::testing::temp_dir();
  write(d + "/a.toml", "base = \"nope.toml\"\n");
  const auto e = recipe_error([&] { load_recipe(d + "/a.toml"); });
  EXPECT_THAT(e.what(), AllOf(HasSubstr("a.toml:1"), HasSubstr("nope.toml")));
}

TEST(Recipe, MissingFile) {
  const auto e = recipe_error([] { load_recipe("/nonexistent/recipe.toml"); });
  EXPECT_THAT(e.what(), HasSubstr("cannot open recipe file"));
}

TEST(Recipe, OverridesAreTypedAndValidated) {
  const Recipe r = parse_recipe("[optim]\nlr = 0.1\n", "o.toml",
                                {"optim.lr=0.05", "model.name=stc_resnet", "train.epochs=4",
                                 "task.freeze=stem,res2", "transform.flip=false"});
  EXPECT_DOUBLE_EQ(r.optim.lr, 0.05);
  EXPECT_EQ(r.model.name, "stc_resnet");
  EXPECT_EQ(r.train.epochs, 4);
  EXPECT_EQ(r.task.freeze, (std::vector<std::string>{"stem", "res2"}));
  EXPECT_FALSE(r.transform.flip);

  const auto bad_type = recipe_error([] { parse_recipe("", "o.toml", {"train.epochs=lots"}); });
  EXPECT_THAT(bad_type.what(), AllOf(HasSubstr("--set train.epochs=lots"), HasSubstr("train.epochs")));
  const auto bad_key = recipe_error([] { parse_recipe("", "o.toml", {"optim.lrate=1"}); });
  EXPECT_THAT(bad_key.what(), AllOf(HasSubstr("unknown key"), HasSubstr("optim.lr")));
  const auto range = recipe_error([] { parse_recipe("", "o.toml", {"optim.lr=-1"}); });
  EXPECT_THAT(range.what(), HasSubstr("below the minimum"));
  const auto form = recipe_error([] { parse_recipe("", "o.toml", {"optim.lr"}); });
  EXPECT_THAT(form.what(), HasSubstr("KEY=VALUE"));
}

TEST(Recipe, ResolvedTomlRoundTrips) {
  const Recipe r = parse_recipe("[optim]\nlr = 0.05\n[run]\nname = \"a \\\"quoted\\\" name\"\n",
                                "rt.toml", {"schedule.milestones=[3, 7]", "schedule.kind=multistep"});
  const std::string text = to_toml(r);
  const Recipe again = parse_recipe(text, "resolved.toml");
  for (const auto& key : recipe_schema()) {
    EXPECT_EQ(to_toml_text(key.get(r)), to_toml_text(key.get(again))) << key.path;
  }
  EXPECT_THAT(text, HasSubstr("# --set schedule.kind=multistep"));
}

TEST(RecipeSchema, DocCoversEveryKeyAndSection) {
  const std::string doc = recipe_doc(false);
  const std::string md = recipe_doc(true);
  std::set<std::string> sections;
  for (const auto& [s, d] : recipe_sections()) sections.insert(s);
  for (const auto& key : recipe_schema()) {
    EXPECT_THAT(doc, HasSubstr("  " + key.path + " (")) << key.path;
    EXPECT_THAT(md, HasSubstr("| `" + key.path + "` |")) << key.path;
    EXPECT_FALSE(key.doc.empty()) << key.path;
    EXPECT_EQ(sections.count(key.path.substr(0, key.path.find('.'))), 1u) << key.path;
    EXPECT_EQ(check_value(key, key.get(Recipe{})), "") << "default out of range: " << key.path;
  }
}

TEST(Registry, ChoicesAreTheRegisteredNamesOfTheirKey) {
  // A key of its own: the catalogue is process-wide.
  Registry<int> r("test.kind", "test kind");
  EXPECT_TRUE(registered_names("test.kind").empty());
  r.add("one", "the first", 1).add("two", "the second", 2, "group");
  EXPECT_EQ(registered_names("test.kind"), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(registered_list("test.kind"), "one, two");
  EXPECT_EQ(registered_choices("test.kind")[1].group, "group");
  EXPECT_EQ(r.at("two"), 2);
  EXPECT_EQ(r.find("three"), nullptr);
  try {
    r.at("three");
    ADD_FAILURE() << "an unknown name was found";
  } catch (const RecipeError& e) {
    EXPECT_EQ(e.key(), "test.kind");
    EXPECT_THAT(e.what(), AllOf(HasSubstr("unknown test kind \"three\""), HasSubstr("(one, two)")));
  }
  EXPECT_THROW(r.add("one", "again", 3), Error);  // a name twice is a programming error
}

TEST(RecipeSchema, RegisteredKeysTakeTheirChoicesFromTheRegistries) {
  // Nothing of the layers above core is linked here: a registered key accepts any name (the
  // layer that looks it up refuses an unknown one); train/registry_test.cc checks them strictly.
  const KeyDef* k = find_key("optim.name");
  ASSERT_NE(k, nullptr);
  EXPECT_TRUE(k->registered);
  EXPECT_TRUE(choices_of(*k).empty());
  EXPECT_NO_THROW(parse_recipe("[optim]\nname = \"anything\"\n", "a.toml"));
}

}  // namespace
}  // namespace holo
