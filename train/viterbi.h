#pragma once
/// Viterbi decoding of frame log-probabilities into segments with a Poisson length model, as the
/// transcript-supervised methods of chapter 9 use it (MuCon's inference "with Viterbi", §9.3.8;
/// the NNViterbi code MuCon's release carries): align a transcript to a video's frames, or pick
/// the best of a set of transcripts (the training transcripts as a path grammar). No torch here.
///
/// alignment: best[n][t] = max over l of best[n-1][t-l] + sum of log p(a_n | frames t-l..t-1)
/// + log Poisson(l; lambda_{a_n}), exact (no pruning), in O(N T L) time for N segments, T frames
/// and lengths up to L (the length model's max_length), O(N T) memory. docs/segmentation.md,
/// "Viterbi", gives frames per second on long videos.

#include <cstdint>
#include <vector>

namespace holo::train::seg {

/// log Poisson(length; lambda_c) per class, renormalised as NNViterbi's PoissonModel does (its
/// mode scores about 0: the norm subtracts the log-probability at round(lambda), with the
/// factorial up to floor(lambda) as that code computes it). Lengths 0 and >= max_length score
/// -infinity.
class PoissonLengthModel {
 public:
  explicit PoissonLengthModel(std::vector<double> mean_lengths, int64_t max_length = 2000, bool renormalize = true);
  double score(int64_t length, int64_t label) const;
  int64_t max_length() const { return max_length_; }
  int64_t classes() const { return static_cast<int64_t>(mean_.size()); }
  const std::vector<double>& mean_lengths() const { return mean_; }

 private:
  std::vector<double> mean_;
  int64_t max_length_;
  std::vector<double> table_;  ///< max_length x classes
};

/// Mean segment length of each class over `sequences` of frame labels (the training ground
/// truth); a class without segments gets the mean over all segments.
std::vector<double> mean_segment_lengths(const std::vector<std::vector<int64_t>>& sequences, int64_t classes);

struct Alignment {
  double score = 0;                 ///< frame log-probabilities plus length log-probabilities
  std::vector<int64_t> transcript;  ///< the segments' labels
  std::vector<int64_t> lengths;     ///< the segments' lengths (sum: the frames)
  std::vector<int64_t> labels;      ///< a label per frame
};

/// The best alignment of `transcript` to `frames` frames of `log_probs` (frames x classes,
/// row-major). Throws holo::Error when the transcript is empty, names a class outside the
/// model, or has more segments than the frames allow.
Alignment viterbi_align(const float* log_probs, int64_t frames, int64_t classes, const std::vector<int64_t>& transcript,
                        const PoissonLengthModel& lengths);

/// The best alignment over `transcripts` (inference with the training transcripts as the
/// grammar); transcripts that cannot fit the frames are passed over.
Alignment viterbi_decode(const float* log_probs, int64_t frames, int64_t classes,
                         const std::vector<std::vector<int64_t>>& transcripts, const PoissonLengthModel& lengths);

}  // namespace holo::train::seg
