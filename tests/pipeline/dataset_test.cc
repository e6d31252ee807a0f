// Every annotation format, quoted labels, both HVU file-name conventions on the real HVU files,
// missing files counted and listed, and the synthetic dataset through a recipe.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/recipe.h"
#include "pipeline/dataset.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  holo::testing::write_text_file(p.string(), "x");
}

std::vector<std::string> ids(const Dataset& d) {
  std::vector<std::string> out;
  for (const auto& r : d.records()) out.push_back(r.id);
  return out;
}
std::vector<int64_t> labels(const Dataset& d) {
  std::vector<int64_t> out;
  for (const auto& r : d.records()) out.push_back(r.label);
  return out;
}

TEST(CsvLine, QuotesAndEscapes) {
  EXPECT_THAT(split_csv_line("a,\"b, c\",,\"say \"\"hi\"\"\""), ElementsAre("a", "b, c", "", "say \"hi\""));
  EXPECT_THAT(split_csv_line("x"), ElementsAre("x"));
}

TEST(Datasets, KineticsQuotedLabelsLayoutsMissingAndTest) {
  const fs::path dir = holo::testing::temp_dir();
  holo::testing::write_text_file((dir / "train.csv").string(),
                                 "label,youtube_id,time_start,time_end,split,is_cc\n"
                                 "\"passing American football (in game)\",aaaaaaaaaaa,14,24,train,0\n"
                                 "abseiling,bbbbbbbbbbb,0,10,train,1\n"
                                 "\"cooking, eggs\",ccccccccccc,5,15,train,0\n"
                                 "abseiling,ddddddddddd,30,40,train,0\n");
  holo::testing::write_text_file((dir / "val.csv").string(),
                                 "label,youtube_id,time_start,time_end,split\n"
                                 "\"cooking, eggs\",eeeeeeeeeee,1,11,val\n");
  holo::testing::write_text_file((dir / "test.csv").string(),
                                 "youtube_id,time_start,time_end,split\nfffffffffff,2,12,test\n");
  // Per-label folders, one with spaces replaced by underscores; one file flat; one missing.
  touch(dir / "v" / "passing_American_football_(in_game)" / "aaaaaaaaaaa_000014_000024.mp4");
  touch(dir / "v" / "abseiling" / "bbbbbbbbbbb_000000_000010.mp4");
  touch(dir / "v" / "cooking, eggs" / "ccccccccccc_000005_000015.mp4");
  touch(dir / "v" / "cooking, eggs" / "eeeeeeeeeee_000001_000011.mp4");
  touch(dir / "v" / "test" / "fffffffffff_000002_000012.mp4");

  Recipe r;
  r.data.dataset = "kinetics";
  r.data.root = (dir / "v").string();
  r.data.train = (dir / "train.csv").string();
  r.data.val = (dir / "val.csv").string();
  r.data.test = (dir / "test.csv").string();
  for (const std::string layout : {"auto", "per_label"}) {
    r.data.layout = layout;
    auto train = make_dataset(r, "train");
    EXPECT_THAT(train->class_names(), ElementsAre("abseiling", "cooking, eggs", "passing American football (in game)"));
    EXPECT_THAT(ids(*train), ElementsAre("aaaaaaaaaaa_000014_000024", "bbbbbbbbbbb_000000_000010",
                                         "ccccccccccc_000005_000015"))
        << layout;
    EXPECT_THAT(labels(*train), ElementsAre(2, 0, 1));
    ASSERT_EQ(train->missing().size(), 1u);
    EXPECT_THAT(train->missing()[0], HasSubstr("ddddddddddd_000030_000040.mp4"));
    EXPECT_TRUE(fs::path(train->records()[0].path).is_absolute());
  }
  r.data.layout = "auto";
  auto val = make_dataset(r, "val");
  EXPECT_THAT(labels(*val), ElementsAre(1));  // numbered by the training file's classes
  auto test = make_dataset(r, "test");
  EXPECT_THAT(ids(*test), ElementsAre("fffffffffff_000002_000012"));
  EXPECT_THAT(labels(*test), ElementsAre(-1));
  r.data.layout = "flat";
  EXPECT_EQ(make_dataset(r, "train")->records().size(), 0u);
  EXPECT_EQ(make_dataset(r, "train")->missing().size(), 4u);
  // Flat: every clip file directly in the root, found under "flat" and under "auto".
  touch(dir / "flat" / "aaaaaaaaaaa_000014_000024.mp4");
  touch(dir / "flat" / "bbbbbbbbbbb_000000_000010.mp4");
  touch(dir / "flat" / "ddddddddddd_000030_000040.mp4");
  r.data.root = (dir / "flat").string();
  for (const std::string layout : {"flat", "auto"}) {
    r.data.layout = layout;
    auto flat = make_dataset(r, "train");
    EXPECT_THAT(ids(*flat), ElementsAre("aaaaaaaaaaa_000014_000024", "bbbbbbbbbbb_000000_000010",
                                        "ddddddddddd_000030_000040"))
        << layout;
    EXPECT_THAT(labels(*flat), ElementsAre(2, 0, 0)) << layout;
    ASSERT_EQ(flat->missing().size(), 1u) << layout;
    EXPECT_THAT(flat->missing()[0], HasSubstr("ccccccccccc_000005_000015.mp4"));
  }
  r.data.root = (dir / "v").string();
  r.data.layout = "auto";

  // A validation label the training file does not have is named with its line.
  holo::testing::write_text_file((dir / "bad.csv").string(),
                                 "label,youtube_id,time_start,time_end,split\nbaking,eeeeeeeeeee,1,11,val\n");
  r.data.val = (dir / "bad.csv").string();
  EXPECT_THAT([&] { make_dataset(r, "val"); }, ::testing::ThrowsMessage<IoError>(HasSubstr("bad.csv:2: label 'baking'")));
  r.data.val = "";
  EXPECT_THAT([&] { make_dataset(r, "val"); }, ::testing::ThrowsMessage<Error>(HasSubstr("data.val is not set")));
}

TEST(Datasets, PathLabelListsSpaceCommaNamesAndMissing) {
  const fs::path dir = holo::testing::temp_dir();
  touch(dir / "a" / "one.mp4");
  touch(dir / "a" / "two words.mp4");
  touch(dir / "b" / "three.avi");
  holo::testing::write_text_file((dir / "train.txt").string(), "# comment\na/one.mp4 2\na/two words.mp4,0\nb/three.avi 1\nb/gone.mp4 1\n");
  Recipe r;
  r.data.dataset = "list";
  r.data.root = dir.string();
  r.data.train = (dir / "train.txt").string();
  auto d = make_dataset(r, "train");
  EXPECT_THAT(ids(*d), ElementsAre("a/one", "a/two words", "b/three"));
  EXPECT_THAT(labels(*d), ElementsAre(2, 0, 1));
  EXPECT_EQ(d->class_names().size(), 3u);
  EXPECT_THAT(d->missing(), ElementsAre((dir / "b" / "gone.mp4").string()));

  holo::testing::write_text_file((dir / "names.txt").string(), "a/one.mp4,walk\nb/three.avi,run\n");
  r.data.train = (dir / "names.txt").string();
  auto n = make_dataset(r, "train");
  EXPECT_THAT(n->class_names(), ElementsAre("run", "walk"));
  EXPECT_THAT(labels(*n), ElementsAre(1, 0));

  // A test list without labels: a path with a space in it is one path, not a path and a label.
  holo::testing::write_text_file((dir / "test.txt").string(), "a/two words.mp4\nb/three.avi\n");
  r.data.train = (dir / "train.txt").string();
  r.data.test = (dir / "test.txt").string();
  auto t = make_dataset(r, "test");
  EXPECT_THAT(ids(*t), ElementsAre("a/two words", "b/three"));
  EXPECT_TRUE(t->missing().empty());
}

TEST(Datasets, Ucf101ClassIndexAndSplits) {
  const fs::path dir = holo::testing::temp_dir();
  holo::testing::write_text_file((dir / "classInd.txt").string(), "1 ApplyEyeMakeup\n2 Archery\n");
  holo::testing::write_text_file((dir / "trainlist01.txt").string(),
                                 "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n");
  holo::testing::write_text_file((dir / "testlist01.txt").string(),
                                 "Archery/v_Archery_g01_c01.avi\nArchery/v_Archery_g02_c01.avi\n");
  touch(dir / "videos" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi");
  touch(dir / "videos" / "Archery" / "v_Archery_g08_c01.avi");
  touch(dir / "videos" / "Archery" / "v_Archery_g01_c01.avi");
  Recipe r;
  r.data.dataset = "ucf101";
  r.data.root = (dir / "videos").string();
  r.data.class_index = (dir / "classInd.txt").string();
  auto train = make_dataset(r, "train");
  EXPECT_THAT(labels(*train), ElementsAre(0, 1));
  EXPECT_THAT(train->class_names(), ElementsAre("ApplyEyeMakeup", "Archery"));
  auto test = make_dataset(r, "test");
  EXPECT_THAT(ids(*test), ElementsAre("v_Archery_g01_c01"));
  EXPECT_THAT(labels(*test), ElementsAre(1));
  EXPECT_THAT(test->missing(),
              ElementsAre((dir / "videos" / "Archery" / "v_Archery_g02_c01.avi").string()));
  holo::testing::write_text_file((dir / "trainlist02.txt").string(), "Archery/v_Archery_g08_c01.avi 1\n");
  r.data.split = 2;
  EXPECT_THAT([&] { make_dataset(r, "train"); },
              ::testing::ThrowsMessage<IoError>(HasSubstr("trainlist02.txt:1: label 1 does not match class 'Archery'")));
}

TEST(Datasets, Hmdb51SplitMarks) {
  const fs::path dir = holo::testing::temp_dir();
  holo::testing::write_text_file((dir / "splits" / "brush_hair_test_split1.txt").string(), "");
  fs::create_directories(dir / "splits");
  holo::testing::write_text_file((dir / "splits" / "brush_hair_test_split1.txt").string(), "a.avi 1 \nb.avi 2 \nc.avi 0 \n");
  holo::testing::write_text_file((dir / "splits" / "cartwheel_test_split1.txt").string(), "d.avi 1 \ne.avi 2 \n");
  holo::testing::write_text_file((dir / "splits" / "cartwheel_test_split2.txt").string(), "d.avi 2 \ne.avi 1 \n");
  for (const auto& [c, v] : std::vector<std::pair<std::string, std::string>>{
           {"brush_hair", "a.avi"}, {"brush_hair", "b.avi"}, {"brush_hair", "c.avi"}, {"cartwheel", "d.avi"}}) {
    touch(dir / "videos" / c / v);
  }
  Recipe r;
  r.data.dataset = "hmdb51";
  r.data.root = (dir / "videos").string();
  r.data.train = (dir / "splits").string();
  auto train = make_dataset(r, "train");
  EXPECT_THAT(ids(*train), ElementsAre("a", "d"));
  EXPECT_THAT(labels(*train), ElementsAre(0, 1));
  EXPECT_THAT(train->class_names(), ElementsAre("brush_hair", "cartwheel"));
  auto test = make_dataset(r, "test");
  EXPECT_THAT(ids(*test), ElementsAre("b"));
  EXPECT_EQ(test->missing().size(), 1u);  // e.avi
}

TEST(Datasets, HvuRealAnnotationsBothFileNameConventions) {
  const std::string hvu = holo::testing::source_dir() + "/../shared/data/hvu";
  const std::string shared = fs::exists(hvu) ? hvu : "/work/shared/data/hvu";
  ASSERT_TRUE(fs::exists(shared + "/HVU_Val_V1.0.csv")) << "HVU annotation files not found at " << shared;
  const fs::path dir = holo::testing::temp_dir();
  // Row 1: gD_G1b0wV5I 101.5-103.5 named in tenths; row 4: s2I4-ErSc7E 182-184 in seconds.
  touch(dir / "gD_G1b0wV5I_001015_001035.mp4");
  touch(dir / "s2I4-ErSc7E_000182_000184.mp4");
  Recipe r;
  r.data.dataset = "hvu";
  r.data.root = dir.string();
  r.data.val = shared + "/HVU_Val_V1.0.csv";
  r.data.categories = shared + "/HVU_Tags_Categories_V1.0.csv";
  auto d = make_dataset(r, "val");
  ASSERT_EQ(d->records().size(), 2u);
  EXPECT_EQ(d->missing().size(), 31171u - 2u);
  EXPECT_EQ(d->class_names().size(), 3142u);
  std::vector<std::string> names;
  size_t total = 0;
  for (const auto& c : d->categories()) {
    names.push_back(c.name);
    total += c.tags.size();
  }
  EXPECT_THAT(names, ElementsAre("action", "attribute", "concept", "event", "object", "scene"));
  EXPECT_EQ(total, 3142u);
  EXPECT_EQ(d->categories()[0].tags.size(), 739u);
  const auto& first = d->records()[0];
  EXPECT_EQ(first.id, "gD_G1b0wV5I_001015_001035");
  std::set<std::string> tags;
  for (int64_t t : first.tags) tags.insert(d->class_names()[t]);
  EXPECT_EQ(tags.size(), 12u);
  EXPECT_TRUE(tags.count("doing_karate") && tags.count("dobok") && tags.count("sport_venue"));
  EXPECT_TRUE(d->multilabel());
  EXPECT_EQ(d->records()[1].id, "s2I4-ErSc7E_000182_000184");

  r.data.name_times = "seconds";
  EXPECT_EQ(make_dataset(r, "val")->records().size(), 1u);
  r.data.name_times = "tenths";
  EXPECT_EQ(make_dataset(r, "val")->records().size(), 1u);
}

// Folder scans judge files by their content: an MP4 named .webm is a video, a one-byte .mp4 is
// not, nor is a text file.
TEST(Datasets, FolderAndContentHash) {
  const fs::path dir = holo::testing::temp_dir();
  fs::create_directories(dir / "b");
  holo::testing::write_coded_video((dir / "b" / "x.mp4").string(), 4);
  fs::copy_file(dir / "b" / "x.mp4", dir / "a.webm");
  touch(dir / "notes.txt");
  touch(dir / "one-byte.mp4");  // named as a video, holds one byte
  Recipe r;
  r.data.dataset = "folder";
  r.data.root = dir.string();
  auto d = make_dataset(r, "train");
  EXPECT_THAT(ids(*d), ElementsAre("a", "b/x"));
  EXPECT_THAT(labels(*d), ElementsAre(-1, -1));
  const std::string h = d->content_hash();
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(make_dataset(r, "train")->content_hash(), h);
  // The same videos in another folder (moved, or staged to another disk) hash the same; the
  // hash with the paths, which older checkpoints hold, does not.
  const fs::path moved = dir.parent_path() / (dir.filename().string() + "-moved");
  fs::remove_all(moved);
  fs::copy(dir, moved, fs::copy_options::recursive);
  Recipe m = r;
  m.data.root = moved.string();
  EXPECT_EQ(make_dataset(m, "train")->content_hash(), h);
  EXPECT_NE(make_dataset(m, "train")->content_hash_with_paths(), d->content_hash_with_paths());
  EXPECT_NE(d->content_hash_with_paths(), h);
  fs::remove_all(moved);
  fs::copy_file(dir / "a.webm", dir / "c.mp4");
  EXPECT_NE(make_dataset(r, "train")->content_hash(), h);
}

TEST(Datasets, SynthThroughTheRecipeIsMadeOnceAndReused) {
  const fs::path dir = holo::testing::temp_dir();
  Recipe r;
  r.data.dataset = "synth";
  r.data.root = (dir / "synth").string();
  r.data.synth_videos = 12;
  r.data.synth_classes = 3;
  r.data.synth_frames = 10;
  auto train = make_dataset(r, "train");
  auto val = make_dataset(r, "val");
  EXPECT_EQ(train->records().size() + val->records().size(), 12u);
  EXPECT_EQ(val->records().size(), 3u);
  EXPECT_THAT(train->class_names(), ElementsAre("moving_left", "moving_right", "rotating_clockwise"));
  EXPECT_TRUE(train->missing().empty());
  const auto mtime = fs::last_write_time(train->records()[0].path);
  EXPECT_EQ(make_dataset(r, "train")->content_hash(), train->content_hash());
  EXPECT_EQ(fs::last_write_time(train->records()[0].path), mtime);  // not made again
  EXPECT_EQ(make_dataset(r, "test")->records().size(), 3u);
  EXPECT_THAT(labels(*make_dataset(r, "test")), ElementsAre(-1, -1, -1));
}

}  // namespace
}  // namespace holo::pipeline
