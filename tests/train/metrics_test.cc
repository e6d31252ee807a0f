#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "core/error.h"
#include "tests/train/python_util.h"
#include "train/metrics.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(ClassificationMeter, HandExample) {
  // Six classes; rows and where the true class ranks.
  ClassificationMeter m(6);
  const std::vector<float> scores = {
      // label 0: top-1 hit
      0.9f, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f,
      // label 1: predicted 0, true class ranks 2nd -> top-5 hit
      0.5f, 0.4f, 0.1f, 0.0f, 0.0f, 0.0f,
      // label 2: ranks 6th (last) -> miss, predicted 5
      0.2f, 0.3f, 0.0f, 0.4f, 0.5f, 0.6f,
      // label 2: hit
      0.1f, 0.1f, 0.7f, 0.1f, 0.0f, 0.0f,
      // label 3: all equal; ties go to the lower index: predicted 0, rank 3 -> top-5 hit
      0.2f, 0.2f, 0.2f, 0.2f, 0.2f, 0.2f,
  };
  m.add(scores, {0, 1, 2, 2, 3});
  EXPECT_EQ(m.count(), 5);
  EXPECT_EQ(m.top1_correct(), 2);
  EXPECT_EQ(m.top5_correct(), 4);
  EXPECT_DOUBLE_EQ(m.top1(), 0.4);
  EXPECT_DOUBLE_EQ(m.top5(), 0.8);
  // Classes seen: 0 (1/1), 1 (0/1), 2 (1/2), 3 (0/1); 4 and 5 never seen.
  EXPECT_DOUBLE_EQ(m.mean_class_accuracy(), (1.0 + 0.0 + 0.5 + 0.0) / 4);
  const auto per = m.per_class_accuracy();
  EXPECT_FALSE(per[4].has_value());
  EXPECT_DOUBLE_EQ(*per[2], 0.5);
  EXPECT_EQ(m.confusion(1, 0), 1);
  EXPECT_EQ(m.confusion(2, 5), 1);
  EXPECT_EQ(m.confusion(2, 2), 1);
  EXPECT_EQ(m.confusion(3, 0), 1);
  EXPECT_EQ(m.confusion(0, 0), 1);
}

TEST(ClassificationMeter, SumsAddUpAcrossRanksLikeOneMeter) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0, 1);
  const int64_t classes = 10, n = 64;
  std::vector<float> s(n * classes);
  std::vector<int64_t> y(n);
  for (auto& v : s) v = u(rng);
  for (auto& v : y) v = rng() % classes;
  ClassificationMeter all(classes), a(classes), b(classes);
  all.add(s, y);
  a.add(s.data(), y.data(), 20);
  b.add(s.data() + 20 * classes, y.data() + 20, n - 20);
  // What an all-reduce with kSum does to the raw sums.
  ClassificationMeter reduced(classes);
  for (size_t i = 0; i < reduced.sums().size(); ++i) {
    reduced.mutable_sums()[i] = a.sums()[i] + b.sums()[i];
  }
  EXPECT_EQ(reduced.sums(), all.sums());
  a.merge(b);
  EXPECT_EQ(a.sums(), all.sums());
  EXPECT_EQ(static_cast<int64_t>(all.sums().size()),
            ClassificationMeter::sums_size(classes, true));
  EXPECT_EQ(ClassificationMeter::sums_size(classes, false), 3 + 2 * classes);
}

TEST(ClassificationMeter, BadLabelNamesRow) {
  ClassificationMeter m(3);
  EXPECT_THAT([&] { m.add({0.1f, 0.2f, 0.3f, 0.3f, 0.2f, 0.1f}, {0, 3}); },
              ThrowsMessage<Error>(HasSubstr("row 1 has label 3, outside [0, 3)")));
  ClassificationMeter no_confusion(3, false);
  EXPECT_THAT([&] { no_confusion.confusion(0, 0); },
              ThrowsMessage<Error>(HasSubstr("no confusion counts")));
}

TEST(AveragePrecision, HandExamples) {
  // Ranked +,-,+,-: P = 1 at R = 0.5, P = 2/3 at R = 1.
  EXPECT_NEAR(*average_precision({0.9f, 0.8f, 0.7f, 0.6f}, {1, 0, 1, 0}), 0.5 + 0.5 * 2.0 / 3,
              1e-12);
  // Tied scores are one threshold: {+,-} at 0.9 gives P = 1/2 at R = 1/2.
  EXPECT_NEAR(*average_precision({0.9f, 0.9f, 0.5f}, {1, 0, 1}), 0.25 + 0.5 * 2.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(*average_precision({0.1f, 0.2f}, {1, 1}), 1.0);
  EXPECT_FALSE(average_precision({0.3f, 0.2f}, {0, 0}).has_value());
}

/// Five videos, five tags; categories A = {0, 1}, B = {2, 3}, C = {4} (never tagged).
struct HandCase {
  std::vector<float> targets = {
      1, 0, 0, 0, 0,  // v0: A
      0, 1, 1, 0, 0,  // v1: A, B
      0, 0, 0, 1, 0,  // v2: B
      1, 1, 0, 0, 0,  // v3: A
      0, 0, 0, 0, 0,  // v4: nothing
  };
  std::vector<float> scores = {
      0.9f,  0.2f, 0.5f,  0.1f,  0.3f,  //
      0.3f,  0.8f, 0.4f,  0.7f,  0.2f,  //
      0.6f,  0.1f, 0.9f,  0.3f,  0.1f,  //
      0.7f,  0.1f, 0.2f,  0.8f,  0.5f,  //
      0.95f, 0.9f, 0.99f, 0.99f, 0.9f,  //
  };
  std::vector<TagGroup> groups = {{"A", {0, 1}}, {"B", {2, 3}}, {"C", {4}}};
};

TEST(MultiLabelMeter, PerCategoryHandExample) {
  HandCase h;
  MultiLabelMeter m(5);
  m.add(h.scores.data(), h.targets.data(), 2);
  m.add(h.scores.data() + 10, h.targets.data() + 10, 3);
  const MultiLabelResult r = m.compute(h.groups);
  ASSERT_EQ(r.groups.size(), 3u);
  // A over {v0, v1, v3}: tag 0 ranks +,+,- (AP 1); tag 1 ranks + (v1), - (v0), + (v3):
  // 1/2 * 1 + 1/2 * 2/3.
  EXPECT_EQ(r.groups[0].videos, 3);
  EXPECT_EQ(r.groups[0].tags_scored, 2);
  EXPECT_NEAR(*r.groups[0].tag_ap[0], 1.0, 1e-12);
  EXPECT_NEAR(*r.groups[0].tag_ap[1], 0.5 + 1.0 / 3, 1e-12);
  const double map_a = (1.0 + 0.5 + 1.0 / 3) / 2;
  EXPECT_NEAR(*r.groups[0].map, map_a, 1e-12);
  // B over {v1, v2}: each tag has its positive ranked second: AP 1/2.
  EXPECT_EQ(r.groups[1].videos, 2);
  EXPECT_NEAR(*r.groups[1].map, 0.5, 1e-12);
  // C: no video has its tag: no mAP, left out of the overall mean.
  EXPECT_EQ(r.groups[2].videos, 0);
  EXPECT_EQ(r.groups[2].tags_scored, 0);
  EXPECT_FALSE(r.groups[2].map.has_value());
  EXPECT_NEAR(*r.overall, (map_a + 0.5) / 2, 1e-12);

  // Standard evaluation: every tag over every video; tag 0 now ranks v4 (-) first:
  // P = 1/2 at R = 1/2, P = 2/3 at R = 1. Tag 4 has no positive and is skipped.
  const MultiLabelResult all = m.compute();
  ASSERT_EQ(all.groups.size(), 1u);
  EXPECT_EQ(all.groups[0].videos, 5);
  EXPECT_EQ(all.groups[0].tags_scored, 4);
  EXPECT_NEAR(*all.groups[0].tag_ap[0], 0.25 + 1.0 / 3, 1e-12);
  EXPECT_FALSE(all.groups[0].tag_ap[4].has_value());
}

TEST(MultiLabelMeter, MasksFollowTheRule) {
  HandCase h;
  const auto masks = category_masks(h.targets.data(), 5, 5, h.groups);
  EXPECT_EQ(masks[0], (std::vector<uint8_t>{1, 1, 0, 1, 0}));
  EXPECT_EQ(masks[1], (std::vector<uint8_t>{0, 1, 1, 0, 0}));
  EXPECT_EQ(masks[2], (std::vector<uint8_t>{0, 0, 0, 0, 0}));
  EXPECT_THAT([&] { category_masks(h.targets.data(), 5, 5, {{"object", {1, 7}}}); },
              ThrowsMessage<Error>(HasSubstr("tag group 'object' holds tag index 7")));
}

TEST(MultiLabelMeter, MatchesScikitLearn) {
  ASSERT_TRUE(testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string dir = testing::temp_dir();
  const int64_t n = 300, tags = 14;
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> level(0, 20);  // coarse scores: many ties
  std::bernoulli_distribution positive(0.12);
  std::vector<float> scores(n * tags), targets(n * tags);
  for (int64_t i = 0; i < n * tags; ++i) {
    targets[i] = positive(rng) ? 1.0f : 0.0f;
    scores[i] = static_cast<float>(level(rng)) / 20.0f + 0.3f * targets[i] * (i % 3 == 0);
  }
  // Tag 13 never positive; some rows lack every tag of a group.
  for (int64_t i = 0; i < n; ++i) targets[i * tags + 13] = 0;
  const std::vector<TagGroup> groups = {
      {"action", {0, 1, 2, 3}}, {"object", {4, 5, 6, 7, 8}}, {"scene", {9, 10}},
      {"event", {11, 12, 13}}};
  {
    std::ofstream f(dir + "/data.txt");
    char buf[64];
    for (int64_t i = 0; i < n * tags; ++i) {
      std::snprintf(buf, sizeof buf, "%.9g %.0f\n", scores[i], targets[i]);
      f << buf;
    }
  }
  const std::string out = testing::run_python(dir, R"(
import numpy as np
from sklearn.metrics import average_precision_score
d = np.loadtxt(')" + dir + R"(/data.txt')
s = d[:, 0].reshape(300, 14); y = d[:, 1].reshape(300, 14)
groups = [[0, 1, 2, 3], [4, 5, 6, 7, 8], [9, 10], [11, 12, 13]]
with open(OUT, 'w') as f:
    maps = []
    for g in groups:
        rows = y[:, g].max(axis=1) > 0
        aps = [average_precision_score(y[rows, t], s[rows, t]) for t in g if y[rows, t].sum() > 0]
        f.write('%.17g\n' % np.mean(aps)); maps.append(np.mean(aps))
    f.write('%.17g\n' % np.mean(maps))
    for t in range(13):
        f.write('%.17g\n' % average_precision_score(y[:, t], s[:, t]))
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_EQ(ref.size(), 4u + 1u + 13u) << out;
  MultiLabelMeter m(tags);
  m.add(scores, targets);
  const auto r = m.compute(groups);
  for (size_t g = 0; g < groups.size(); ++g) {
    EXPECT_NEAR(*r.groups[g].map, ref[g], 1e-12) << groups[g].name;
  }
  EXPECT_NEAR(*r.overall, ref[4], 1e-12);
  EXPECT_EQ(r.groups[3].tags_scored, 2);
  for (int64_t t = 0; t < 13; ++t) {
    std::vector<float> col_s(n), col_y(n);
    for (int64_t i = 0; i < n; ++i) {
      col_s[i] = scores[i * tags + t];
      col_y[i] = targets[i * tags + t];
    }
    EXPECT_NEAR(*average_precision(col_s, col_y), ref[5 + t], 1e-12) << "tag " << t;
  }
}

}  // namespace
}  // namespace holo
