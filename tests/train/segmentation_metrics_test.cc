// Segmentation metrics (train/segmentation_metrics.h): hand-computed cases, MS-TCN's evaluation
// and the matching score side by side in /usr/bin/python3 on random videos, and
// `holo metrics segmentation` on files, errors included.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"
#include "train/segmentation_metrics.h"

namespace holo::train::seg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Labels = std::vector<std::string>;

Labels repeat(std::initializer_list<std::pair<const char*, int>> runs) {
  Labels out;
  for (const auto& [label, n] : runs) out.insert(out.end(), static_cast<size_t>(n), label);
  return out;
}

TEST(SegmentationMetrics, OneSegmentPredictedExactly) {
  SegmentationMeter m({});
  m.add("v", repeat({{"a", 4}}), repeat({{"a", 4}}));
  EXPECT_DOUBLE_EQ(m.mof(), 100);
  EXPECT_DOUBLE_EQ(m.edit(), 100);
  for (const auto& [k, v] : m.f1()) EXPECT_DOUBLE_EQ(v, 100) << k;
  EXPECT_DOUBLE_EQ(m.iod(), 100);
  EXPECT_DOUBLE_EQ(m.matching(), 100);
}

TEST(SegmentationMetrics, AllBackgroundPredicted) {
  // gt: bg bg a a a a bg bg; everything predicted as background.
  SegmentationMeter m({"bg"});
  m.add("v", repeat({{"bg", 2}, {"a", 4}, {"bg", 2}}), repeat({{"bg", 8}}));
  EXPECT_DOUBLE_EQ(m.mof(), 50);   // the 4 background frames
  EXPECT_DOUBLE_EQ(m.edit(), 0);   // [] against [a]: one edit of one
  for (const auto& [k, v] : m.f1()) EXPECT_DOUBLE_EQ(v, 0) << k;  // tp 0, fp 0, fn 1
  EXPECT_DOUBLE_EQ(m.iod(), 0);
  // Transcripts with background: [bg a bg] against [bg]: one match, 2 x 1 / (3 + 1).
  EXPECT_DOUBLE_EQ(m.matching(), 50);
}

TEST(SegmentationMetrics, UnderSegmentedThresholdsDiffer) {
  // gt: a x10; pred: a x3 then b x7. MS-TCN's bounds: gt a [0, 9), pred a [0, 3), b [3, 9).
  SegmentationMeter m({});
  m.add("v", repeat({{"a", 10}}), repeat({{"a", 3}, {"b", 7}}));
  EXPECT_DOUBLE_EQ(m.mof(), 30);
  EXPECT_DOUBLE_EQ(m.edit(), 50);  // [a b] against [a]: 1 edit of 2
  const auto f1 = m.f1();
  // IoU of a: 3 / 9 = 0.33: a true positive at 10% and 25% (tp 1, fp 1 (b), fn 0: P 0.5, R 1,
  // F1 2/3), a false positive at 50% (tp 0, fp 2, fn 1).
  EXPECT_NEAR(f1.at(0.1), 200.0 / 3.0, 1e-12);
  EXPECT_NEAR(f1.at(0.25), 200.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(f1.at(0.5), 0);
  EXPECT_DOUBLE_EQ(m.iod(), 100);  // the predicted a lies wholly inside the ground truth's a
  EXPECT_NEAR(m.matching(), 200.0 / 3.0, 1e-12);  // [a] and [a b]: 2 x 1 / 3
}

TEST(SegmentationMetrics, OverSegmented) {
  // gt: a x6 b x6; pred: a a a c a a b x6.
  // MS-TCN's bounds: gt a [0,6), b [6,11); pred a [0,3), c [3,4), a [4,6), b [6,11).
  SegmentationMeter m({});
  m.add("v", repeat({{"a", 6}, {"b", 6}}), repeat({{"a", 3}, {"c", 1}, {"a", 2}, {"b", 6}}));
  EXPECT_NEAR(m.mof(), 100.0 * 11 / 12, 1e-12);
  EXPECT_DOUBLE_EQ(m.edit(), 50);  // [a c a b] against [a b]: 2 edits of 4
  // a [0,3): IoU 0.5, a true positive; c: a false positive; a [4,6): IoU 1/3 but its ground
  // truth is taken, a false positive; b: IoU 1, a true positive. tp 2, fp 2, fn 0: F1 2/3.
  for (const auto& [k, v] : m.f1()) EXPECT_NEAR(v, 200.0 / 3.0, 1e-12) << k;
  // IoD: a: max(3/3, 2/2) = 1; b: 6/6 = 1.
  EXPECT_DOUBLE_EQ(m.iod(), 100);
  // [a b] against [a c a b]: two matches, 2 x 2 / 6.
  EXPECT_NEAR(m.matching(), 200.0 / 3.0, 1e-12);
}

TEST(SegmentationMetrics, LabelsAbsentFromTheGroundTruth) {
  SegmentationMeter m({});
  m.add("v", repeat({{"a", 2}, {"b", 2}}), repeat({{"a", 2}, {"z", 2}}));
  EXPECT_DOUBLE_EQ(m.mof(), 50);
  EXPECT_DOUBLE_EQ(m.edit(), 50);
  for (const auto& [k, v] : m.f1()) EXPECT_DOUBLE_EQ(v, 50) << k;  // tp 1, fp 1 (z), fn 1 (b)
  EXPECT_DOUBLE_EQ(m.iod(), 50);  // a: 1, b: nothing of its label
  EXPECT_DOUBLE_EQ(m.matching(), 50);
}

TEST(SegmentationMetrics, EmptyVideosAndUnequalLengths) {
  EXPECT_DOUBLE_EQ(edit_score({}, {}, {}), 100);
  EXPECT_DOUBLE_EQ(matching_score({}, {}), 1);
  EXPECT_LT(iod({}, {}, {}), 0);  // no ground-truth segment: not counted
  const F1Counts c = f1_counts({}, repeat({{"a", 3}}), 0.1, {});
  EXPECT_EQ(c.tp + c.fp, 0);
  EXPECT_EQ(c.fn, 1);
  SegmentationMeter m({});
  EXPECT_THAT([&] { m.add("clip_7", repeat({{"a", 3}}), {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("clip_7: the prediction has 0 frames, the ground truth 3")));
}

/// Random videos: a few segments of a few labels (one of them background), predictions that
/// are the ground truth with noise, split and shifted segments.
std::vector<std::pair<Labels, Labels>> random_videos(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Labels names = {"bg", "a", "b", "c", "d"};
  auto draw = [&](int64_t frames) {
    Labels out;
    while (static_cast<int64_t>(out.size()) < frames) {
      const auto& l = names[rng() % names.size()];
      const int64_t run = 1 + static_cast<int64_t>(rng() % 12);
      for (int64_t k = 0; k < run && static_cast<int64_t>(out.size()) < frames; ++k) out.push_back(l);
    }
    return out;
  };
  std::vector<std::pair<Labels, Labels>> out;
  for (int i = 0; i < n; ++i) {
    const int64_t frames = 1 + static_cast<int64_t>(rng() % 60);
    Labels gt = draw(frames), pred = gt;
    for (auto& p : pred) {
      if (rng() % 5 == 0) p = names[rng() % names.size()];
    }
    if (i % 7 == 0) pred = draw(frames);
    out.emplace_back(gt, pred);
  }
  return out;
}

TEST(SegmentationMetrics, EqualMsTcnsEvaluationAndTheMatchingScoreInPython) {
  ASSERT_TRUE(testing::have_reference_python()) << testing::kReferencePython << " is installed by install-deps";
  const std::string dir = holo::testing::temp_dir();
  const auto videos = random_videos(300, 17);
  {
    std::ofstream f(dir + "/videos.txt");
    for (const auto& [gt, pred] : videos) {
      for (size_t i = 0; i < gt.size(); ++i) f << (i ? " " : "") << gt[i];
      f << "\n";
      for (size_t i = 0; i < pred.size(); ++i) f << (i ? " " : "") << pred[i];
      f << "\n";
    }
  }
  // MS-TCN's eval.py (get_labels_start_end_time, levenstein, edit_score, f_score, the MoF and
  // the summing over videos) and the edit_distance package's lowest-cost alignment, written out.
  const std::string out = testing::run_python(dir, R"(
import numpy as np
def bounds(f, bg):
    labels, starts, ends = [], [], []
    last = f[0]
    if f[0] not in bg:
        labels.append(f[0]); starts.append(0)
    for i in range(len(f)):
        if f[i] != last:
            if f[i] not in bg:
                labels.append(f[i]); starts.append(i)
            if last not in bg:
                ends.append(i)
            last = f[i]
    if last not in bg:
        ends.append(i)
    return labels, starts, ends
def lev(p, y):
    D = np.zeros([len(p) + 1, len(y) + 1])
    for i in range(len(p) + 1): D[i, 0] = i
    for j in range(len(y) + 1): D[0, j] = j
    for j in range(1, len(y) + 1):
        for i in range(1, len(p) + 1):
            D[i, j] = D[i - 1, j - 1] if y[j - 1] == p[i - 1] else min(D[i - 1, j], D[i, j - 1], D[i - 1, j - 1]) + 1
    return D[-1, -1]
def edit(r, g, bg):
    P = bounds(r, bg)[0]; Y = bounds(g, bg)[0]
    if max(len(P), len(Y)) == 0: return 100.0
    return (1 - lev(P, Y) / max(len(P), len(Y))) * 100
def fscore(r, g, overlap, bg):
    pl, ps, pe = bounds(r, bg); yl, ys, ye = bounds(g, bg)
    tp = fp = 0; hits = np.zeros(len(yl))
    for j in range(len(pl)):
        if len(yl) == 0:
            fp += 1; continue
        with np.errstate(divide='ignore', invalid='ignore'):
            inter = np.minimum(pe[j], ye) - np.maximum(ps[j], ys)
            union = np.maximum(pe[j], ye) - np.minimum(ps[j], ys)
            iou = (1.0 * inter / union) * np.array([pl[j] == yl[x] for x in range(len(yl))])
        idx = np.array(iou).argmax()
        if iou[idx] >= overlap and not hits[idx]:
            tp += 1; hits[idx] = 1
        else:
            fp += 1
    return tp, fp, len(yl) - hits.sum()
def matches(a, b):
    if a == b: return len(b)
    if len(a) == 0 or len(b) == 0: return 0
    n = len(b)
    v0 = list(range(n + 1)); m0 = [0] * (n + 1)
    for i in range(1, len(a) + 1):
        v1 = [i] + [0] * n; m1 = [0] * (n + 1)
        for j in range(1, n + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            ic, dc, sc = v1[j - 1] + 1, v0[j] + 1, v0[j - 1] + cost
            low = min(ic, dc, sc)
            if low == sc: v1[j], m1[j] = sc, m0[j - 1] + (1 - cost)
            elif low == ic: v1[j], m1[j] = ic, m1[j - 1]
            else: v1[j], m1[j] = dc, m0[j]
        v0, m0 = v1, m1
    return m0[n]
def transcript(f):
    return [f[i] for i in range(len(f)) if i == 0 or f[i] != f[i - 1]]
lines = open(')" + dir + R"(/videos.txt').read().split('\n')
bg = ['bg']
correct = total = 0; edits = []; matching = []
counts = {k: [0, 0, 0] for k in (0.1, 0.25, 0.5)}
for v in range(len(lines) // 2):
    g = lines[2 * v].split(); r = lines[2 * v + 1].split()
    correct += sum(1 for i in range(len(g)) if g[i] == r[i]); total += len(g)
    edits.append(edit(r, g, bg))
    for k in counts:
        tp, fp, fn = fscore(r, g, k, bg)
        counts[k][0] += tp; counts[k][1] += fp; counts[k][2] += fn
    a, b = transcript(g), transcript(r)
    matching.append(2.0 * matches(a, b) / (len(a) + len(b)))
with open(OUT, 'w') as f:
    f.write('%.17g\n%.17g\n' % (100.0 * correct / total, np.mean(edits)))
    for k in (0.1, 0.25, 0.5):
        tp, fp, fn = counts[k]
        p = tp / (tp + fp); rc = tp / (tp + fn)
        f.write('%.17g\n' % (2 * p * rc / (p + rc) * 100))
    f.write('%.17g\n' % (100 * np.mean(matching)))
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_EQ(ref.size(), 6u) << out;
  SegmentationMeter m({"bg"});
  for (size_t i = 0; i < videos.size(); ++i) m.add(std::to_string(i), videos[i].first, videos[i].second);
  EXPECT_NEAR(m.mof(), ref[0], 1e-9);
  EXPECT_NEAR(m.edit(), ref[1], 1e-9);
  const auto f1 = m.f1();
  EXPECT_NEAR(f1.at(0.1), ref[2], 1e-9);
  EXPECT_NEAR(f1.at(0.25), ref[3], 1e-9);
  EXPECT_NEAR(f1.at(0.5), ref[4], 1e-9);
  EXPECT_NEAR(m.matching(), ref[5], 1e-9);
}

void write_lines(const std::string& path, const Labels& labels) {
  std::ofstream f(path);
  for (const auto& l : labels) f << l << "\n";
}

TEST(SegmentationMetrics, CommandReadsFoldersAndNamesBadFiles) {
  const std::string dir = holo::testing::temp_dir();
  fs::create_directories(dir + "/gt");
  fs::create_directories(dir + "/pred");
  std::ofstream(dir + "/mapping.txt") << "0 SIL\n1 pour\n2 stir\n";
  write_lines(dir + "/gt/v1.txt", repeat({{"SIL", 2}, {"pour", 4}, {"SIL", 2}}));
  write_lines(dir + "/pred/v1.txt", repeat({{"SIL", 8}}));
  write_lines(dir + "/gt/v2.txt", repeat({{"pour", 6}, {"stir", 6}}));
  write_lines(dir + "/pred/v2.txt", repeat({{"pour", 3}, {"stir", 1}, {"pour", 2}, {"stir", 6}}));
  const std::string cmd = holo::testing::holo_binary() + " metrics segmentation --gt " + dir + "/gt --pred " + dir +
                          "/pred --mapping " + dir + "/mapping.txt --bg SIL";
  auto r = holo::testing::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // MoF (4 + 11) / 20; Edit (0 + 50) / 2; F1@10: tp 2, fp 2, fn 1 -> P 1/2, R 2/3, F1 4/7.
  EXPECT_THAT(r.output, HasSubstr("75.00"));
  EXPECT_THAT(r.output, HasSubstr("25.00"));
  EXPECT_THAT(r.output, HasSubstr("57.14"));

  write_lines(dir + "/pred/v2.txt", repeat({{"pour", 3}, {"shake", 9}}));
  r = holo::testing::run_command(cmd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir + "/pred/v2.txt:4: label 'shake' is not in the mapping"));

  write_lines(dir + "/pred/v2.txt", repeat({{"pour", 11}}));
  r = holo::testing::run_command(cmd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr(dir + "/pred/v2.txt: 11 frame labels, the ground truth " + dir + "/gt/v2.txt has 12"));

  fs::remove(dir + "/pred/v2.txt");
  r = holo::testing::run_command(cmd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("no prediction '" + dir + "/pred/v2.txt'"));

  r = holo::testing::run_command(cmd + ",background");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--bg label 'background' is not in " + dir + "/mapping.txt"));
}

}  // namespace
}  // namespace holo::train::seg
