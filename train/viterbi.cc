#include "train/viterbi.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"

namespace holo::train::seg {

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
}

PoissonLengthModel::PoissonLengthModel(std::vector<double> mean_lengths, int64_t max_length, bool renormalize)
    : mean_(std::move(mean_lengths)), max_length_(max_length) {
  if (mean_.empty()) throw Error("a length model needs at least one class");
  if (max_length_ < 2) throw Error("a length model's max_length must be at least 2");
  const auto c = static_cast<int64_t>(mean_.size());
  std::vector<double> norm(mean_.size(), 0.0);
  for (int64_t k = 0; k < c; ++k) {
    if (!(mean_[k] > 0)) throw Error("class " + std::to_string(k) + ": mean length must be positive");
    if (renormalize) {
      const double r = std::round(mean_[k]);
      double log_fak = 0;
      for (int64_t i = 2; i <= static_cast<int64_t>(mean_[k]); ++i) log_fak += std::log(static_cast<double>(i));
      norm[k] = r * std::log(r) - r - log_fak;
    }
  }
  table_.assign(static_cast<size_t>(max_length_ * c), kNegInf);
  double log_fak = 0;
  for (int64_t l = 1; l < max_length_; ++l) {
    log_fak += std::log(static_cast<double>(l));
    for (int64_t k = 0; k < c; ++k) {
      table_[l * c + k] = static_cast<double>(l) * std::log(mean_[k]) - mean_[k] - log_fak - norm[k];
    }
  }
}

double PoissonLengthModel::score(int64_t length, int64_t label) const {
  if (length <= 0 || length >= max_length_) return kNegInf;
  return table_[length * classes() + label];
}

std::vector<double> mean_segment_lengths(const std::vector<std::vector<int64_t>>& sequences, int64_t classes) {
  std::vector<double> sum(static_cast<size_t>(classes), 0.0), count(static_cast<size_t>(classes), 0.0);
  double all = 0, segments = 0;
  for (const auto& s : sequences) {
    for (size_t start = 0; start < s.size();) {
      size_t end = start + 1;
      while (end < s.size() && s[end] == s[start]) ++end;
      const auto c = static_cast<size_t>(s[start]);
      if (c < sum.size()) {
        sum[c] += static_cast<double>(end - start);
        count[c] += 1;
      }
      all += static_cast<double>(end - start);
      segments += 1;
      start = end;
    }
  }
  const double fallback = segments > 0 ? all / segments : 1.0;
  std::vector<double> out(static_cast<size_t>(classes));
  for (size_t c = 0; c < out.size(); ++c) out[c] = count[c] > 0 ? sum[c] / count[c] : fallback;
  return out;
}

Alignment viterbi_align(const float* log_probs, int64_t frames, int64_t classes, const std::vector<int64_t>& transcript,
                        const PoissonLengthModel& lengths) {
  const auto n_seg = static_cast<int64_t>(transcript.size());
  if (n_seg == 0) throw Error("Viterbi: an empty transcript");
  if (classes != lengths.classes()) {
    throw Error("Viterbi: " + std::to_string(classes) + " classes of scores, " + std::to_string(lengths.classes()) +
                " of the length model");
  }
  for (int64_t a : transcript) {
    if (a < 0 || a >= classes) throw Error("Viterbi: transcript label " + std::to_string(a) + " is not a class");
  }
  const int64_t longest = lengths.max_length() - 1;
  if (n_seg > frames || n_seg * longest < frames) {
    throw Error("Viterbi: a transcript of " + std::to_string(n_seg) + " segments cannot cover " +
                std::to_string(frames) + " frames with segments of 1 to " + std::to_string(longest) + " frames");
  }
  // Cumulative frame scores of the transcript's labels only: cum[n][t] = sum over frames < t.
  std::vector<double> cum(static_cast<size_t>(n_seg * (frames + 1)), 0.0);
  for (int64_t n = 0; n < n_seg; ++n) {
    double* row = cum.data() + n * (frames + 1);
    for (int64_t t = 0; t < frames; ++t) row[t + 1] = row[t] + log_probs[t * classes + transcript[n]];
  }
  // best[n][t]: first n + 1 segments over the first t frames; from[n][t]: the last one's length.
  std::vector<double> best(static_cast<size_t>(n_seg * (frames + 1)), kNegInf);
  std::vector<int32_t> from(static_cast<size_t>(n_seg * (frames + 1)), 0);
  std::vector<double> length_score(static_cast<size_t>(longest + 1));
  for (int64_t n = 0; n < n_seg; ++n) {
    const int64_t a = transcript[n];
    for (int64_t l = 1; l <= longest; ++l) length_score[l] = lengths.score(l, a);
    const double* c = cum.data() + n * (frames + 1);
    double* b = best.data() + n * (frames + 1);
    int32_t* f = from.data() + n * (frames + 1);
    const double* prev = n > 0 ? best.data() + (n - 1) * (frames + 1) : nullptr;
    // Segment n ends at frame t (exclusive): at least n + 1 frames before it, at least
    // n_seg - n - 1 after it.
    for (int64_t t = n + 1; t <= frames - (n_seg - n - 1); ++t) {
      double top = kNegInf;
      int32_t arg = 0;
      const int64_t max_l = std::min(longest, t - n);
      for (int64_t l = 1; l <= max_l; ++l) {
        const int64_t s = t - l;
        const double before = n == 0 ? (s == 0 ? 0.0 : kNegInf) : prev[s];
        if (before == kNegInf) continue;
        const double v = before + (c[t] - c[s]) + length_score[l];
        if (v > top) {
          top = v;
          arg = static_cast<int32_t>(l);
        }
      }
      b[t] = top;
      f[t] = arg;
    }
  }
  Alignment out;
  out.score = best[(n_seg - 1) * (frames + 1) + frames];
  if (out.score == kNegInf) {
    throw Error("Viterbi: no alignment of " + std::to_string(n_seg) + " segments to " + std::to_string(frames) +
                " frames has a finite score");
  }
  out.transcript = transcript;
  out.lengths.assign(static_cast<size_t>(n_seg), 0);
  for (int64_t n = n_seg - 1, t = frames; n >= 0; --n) {
    const int32_t l = from[n * (frames + 1) + t];
    out.lengths[static_cast<size_t>(n)] = l;
    t -= l;
  }
  for (int64_t n = 0; n < n_seg; ++n) {
    out.labels.insert(out.labels.end(), static_cast<size_t>(out.lengths[n]), transcript[n]);
  }
  return out;
}

Alignment viterbi_decode(const float* log_probs, int64_t frames, int64_t classes,
                         const std::vector<std::vector<int64_t>>& transcripts, const PoissonLengthModel& lengths) {
  Alignment best;
  best.score = kNegInf;
  for (const auto& tr : transcripts) {
    if (tr.empty() || static_cast<int64_t>(tr.size()) > frames ||
        static_cast<int64_t>(tr.size()) * (lengths.max_length() - 1) < frames) {
      continue;
    }
    Alignment a = viterbi_align(log_probs, frames, classes, tr, lengths);
    if (a.score > best.score) best = std::move(a);
  }
  if (best.score == kNegInf) throw Error("Viterbi: none of the " + std::to_string(transcripts.size()) + " transcripts fits " + std::to_string(frames) + " frames");
  return best;
}

}  // namespace holo::train::seg
