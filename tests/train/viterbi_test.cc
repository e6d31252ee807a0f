// Viterbi alignment with a Poisson length model (train/viterbi.h): against every segmentation
// of short videos enumerated, against NNViterbi's hypothesis decoder (the code MuCon's release
// carries, written out) in /usr/bin/python3, and its refusals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <random>

#include "core/error.h"
#include "tests/test_util.h"
#include "tests/train/python_util.h"
#include "train/viterbi.h"

namespace holo::train::seg {
namespace {

using ::testing::HasSubstr;

std::vector<float> random_log_probs(int64_t frames, int64_t classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> out(static_cast<size_t>(frames * classes));
  for (int64_t t = 0; t < frames; ++t) {
    float max = -1e30f, sum = 0;
    for (int64_t c = 0; c < classes; ++c) max = std::max(max, out[t * classes + c] = normal(rng));
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(out[t * classes + c] - max);
    for (int64_t c = 0; c < classes; ++c) out[t * classes + c] -= max + std::log(sum);
  }
  return out;
}

TEST(Viterbi, PoissonLengthsAreNnViterbisModel) {
  const PoissonLengthModel m({5.0, 12.4}, 100);
  // l log(lambda) - lambda - log(l!) - norm, norm the same at round(lambda) with floor(lambda)'s
  // factorial: at l = round(lambda) = floor(lambda) the score is 0.
  EXPECT_NEAR(m.score(5, 0), 0.0, 1e-12);
  EXPECT_NEAR(m.score(12, 1), 12 * std::log(12.4) - 12.4 - (12 * std::log(12.0) - 12), 1e-9);
  EXPECT_NEAR(m.score(3, 0) - m.score(5, 0), 3 * std::log(5.0) - std::lgamma(4.0) - (5 * std::log(5.0) - std::lgamma(6.0)),
              1e-9);
  EXPECT_EQ(m.score(0, 0), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(m.score(100, 0), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(mean_segment_lengths({{0, 0, 0, 1, 1, 0}, {1, 1, 1, 1}}, 3), (std::vector<double>{2.0, 3.0, 2.5}));  // class 2: the mean of all 4 segments
}

TEST(Viterbi, AlignmentIsTheBestOfEverySegmentation) {
  const PoissonLengthModel lengths({3.0, 2.0, 4.5}, 9);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const int64_t frames = 6 + static_cast<int64_t>(seed % 7);
    const auto lp = random_log_probs(frames, 3, seed);
    // Neighbours differ, so that no two splits tie.
    const std::vector<int64_t> transcript = {static_cast<int64_t>(seed % 3), static_cast<int64_t>((seed + 1) % 3),
                                             static_cast<int64_t>((seed + 2) % 3)};
    // Every split of the frames into three segments.
    double best = -std::numeric_limits<double>::infinity();
    std::vector<int64_t> best_lengths;
    for (int64_t a = 1; a < frames; ++a) {
      for (int64_t b = 1; a + b < frames; ++b) {
        const std::vector<int64_t> ls = {a, b, frames - a - b};
        double s = 0;
        int64_t t = 0;
        for (size_t n = 0; n < 3; ++n) {
          for (int64_t k = 0; k < ls[n]; ++k, ++t) s += lp[t * 3 + transcript[n]];
          s += lengths.score(ls[n], transcript[n]);
        }
        if (s > best) {
          best = s;
          best_lengths = ls;
        }
      }
    }
    const Alignment al = viterbi_align(lp.data(), frames, 3, transcript, lengths);
    EXPECT_NEAR(al.score, best, 1e-9) << "seed " << seed;
    EXPECT_EQ(al.lengths, best_lengths) << "seed " << seed;
    EXPECT_EQ(static_cast<int64_t>(al.labels.size()), frames);
  }
}

TEST(Viterbi, DecodePicksTheBestTranscriptAndRefusesWhatCannotFit) {
  const PoissonLengthModel lengths({4.0, 4.0}, 50);
  // Frames 0-3 are class 1, 4-11 class 0.
  std::vector<float> lp(24, std::log(0.1f));
  for (int t = 0; t < 12; ++t) lp[t * 2 + (t < 4 ? 1 : 0)] = std::log(0.9f);
  const Alignment a = viterbi_decode(lp.data(), 12, 2, {{0, 1}, {1, 0}, {0}}, lengths);
  EXPECT_EQ(a.transcript, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(a.lengths, (std::vector<int64_t>{4, 8}));
  EXPECT_THAT([&] { viterbi_align(lp.data(), 12, 2, {}, lengths); },
              ::testing::ThrowsMessage<Error>(HasSubstr("an empty transcript")));
  EXPECT_THAT([&] { viterbi_align(lp.data(), 12, 2, {0, 2}, lengths); },
              ::testing::ThrowsMessage<Error>(HasSubstr("transcript label 2 is not a class")));
  EXPECT_THAT([&] { viterbi_align(lp.data(), 1, 2, {0, 1}, lengths); },
              ::testing::ThrowsMessage<Error>(HasSubstr("a transcript of 2 segments cannot cover 1 frames")));
}

TEST(Viterbi, EqualsNnViterbisHypothesisDecoderInPython) {
  ASSERT_TRUE(testing::have_reference_python());
  const std::string dir = holo::testing::temp_dir();
  const int64_t frames = 70, classes = 5;
  const auto lp = random_log_probs(frames, classes, 99);
  const std::vector<int64_t> transcript = {0, 3, 1, 3, 4};
  const std::vector<double> means = {9.0, 15.5, 6.0, 11.0, 20.0};
  {
    std::ofstream f(dir + "/lp.txt");
    f.precision(9);
    for (float v : lp) f << v << "\n";
  }
  // NNViterbi's Viterbi.decode with a SingleTranscriptGrammar and its PoissonModel (max length
  // 40), frame_sampling 1, no pruning.
  const std::string out = testing::run_python(dir, R"(
import numpy as np
lp = np.loadtxt(')" + dir + R"(/lp.txt').reshape(70, 5)
means = np.array([9.0, 15.5, 6.0, 11.0, 20.0]); max_len = 40
norms = np.round(means) * np.log(np.round(means)) - np.round(means)
for c in range(5):
    logFak = 0
    for k in range(2, int(means[c]) + 1): logFak += np.log(k)
    norms[c] -= logFak
pois = np.zeros((max_len, 5)); pois[0, :] = -np.inf; logFak = 0
for l in range(1, max_len):
    logFak += np.log(l); pois[l, :] = l * np.log(means) - means - logFak - norms
def lscore(l, c): return -np.inf if l >= max_len else pois[l, c]
transcript = [0, 3, 1, 3, 4]
def successors(i): return [transcript[i]] if i < len(transcript) else ['end']
cum = np.cumsum(lp, axis=0)
# hypotheses keyed by (segment index, length): (score, traceback)
hyps = {(0, 1): (cum[0, transcript[0]], [transcript[0]])}
for t in range(1, 70):
    new = {}
    def update(k, s, tb):
        if k not in new or new[k][0] <= s: new[k] = (s, tb)
    for (i, length), (s, tb) in hyps.items():
        a = transcript[i]
        if length + 1 <= max_len:
            update((i, length + 1), s + lp[t, a], tb + [a])
        if i + 1 < len(transcript):
            b = transcript[i + 1]
            update((i + 1, 1), s + lp[t, b] + lscore(length, a), tb + [b])
    hyps = new
best = (-np.inf, None)
for (i, length), (s, tb) in hyps.items():
    if i != len(transcript) - 1: continue
    f = s + lscore(length, transcript[i])
    if f >= best[0]: best = (f, tb)
with open(OUT, 'w') as f:
    f.write('%.17g\n' % best[0]); f.write(' '.join(str(x) for x in best[1]) + '\n')
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_EQ(ref.size(), 1u + frames) << out;
  const Alignment a = viterbi_align(lp.data(), frames, classes, transcript, PoissonLengthModel(means, 40));
  EXPECT_NEAR(a.score, ref[0], 1e-6);
  for (int64_t t = 0; t < frames; ++t) EXPECT_EQ(a.labels[t], static_cast<int64_t>(ref[1 + t])) << "frame " << t;
}

}  // namespace
}  // namespace holo::train::seg
