#pragma once
/// Token reduction inside transformer blocks: the Adaptive Token Sampler (ATS, chapter 7 of the
/// thesis, §7.2, eqs. 7.1-7.6) and token merging (ToMe, Bolya et al. 2023) as an alternative.
/// Plain tensor functions, so that each step can be checked on hand-made inputs; the blocks of
/// models/transformer.h call them. docs/models.md, "Transformers and token reduction".
///
/// ATS, as the thesis states it (AtsVariant::kThesis, the default):
///   - significance scores (7.3): for every head h, S^h_j = A^h_{1,j} ||V^h_j|| over the
///     non-CLS tokens j, normalised to sum 1; the scores of the heads are summed (and divided by
///     the number of heads, so that they still sum to 1);
///   - the CDF of the scores in token order (7.4); K fixed points (2i-1)/2K, i = 1..K, each
///     mapped to the token whose CDF value is nearest (the first such token on ties, so a token
///     with score 0 is never taken in place of the token before it that carries the mass);
///   - unique indices: K' <= K tokens, kept in token order; the CLS token always first.
/// The released code (AtsVariant::kRelease) differs: the score is the CLS row summed over heads
/// times the norm of the whole V_j (all heads together), normalised once; the scores are sorted
/// (ascending) before the CDF; the CDF is min-max normalised; its K points run evenly from the
/// smallest non-zero CDF value to 1; and the kept tokens stay in score order. Its K points here
/// are K (the release's n_tokens is K + 1, counting the CLS token), and K < N works.
///
/// Padding: a batch keeps m = max_i(K'_i + 1) tokens (§7.3.3). Padded tokens have size 0:
/// blocks add log(size) to the attention logits, which masks them out as keys (and is ToMe's
/// proportional attention for merged tokens), and zero them after every block.

#include <torch/types.h>

#include <string>

namespace holo::models {

enum class AtsVariant { kThesis, kRelease };
/// "thesis" or "release" (model.ats_variant).
AtsVariant parse_ats_variant(const std::string& s);

/// Significance scores of the N = n - 1 non-CLS tokens: B x N, each row summing to 1 (0 for
/// padded tokens). cls_attention: B x H x n, the CLS row of the attention matrix after the
/// softmax (padded keys 0); v: B x H x n x d_h.
torch::Tensor ats_scores(const torch::Tensor& cls_attention, const torch::Tensor& v, AtsVariant variant);

/// What inverse transform sampling keeps of each row of a batch.
struct AtsSample {
  torch::Tensor index;  ///< int64 B x (m - 1): kept tokens (0-based among the N non-CLS tokens), in output order; 0 where padded
  torch::Tensor valid;  ///< bool B x (m - 1): false for padding
  torch::Tensor kept;   ///< int64 B: K' of each row
};

/// Samples at most k of the N tokens from their scores (B x N, rows summing to 1) and lays them
/// out for the next block: m - 1 = max_i K'_i columns. k >= 1; k may exceed N.
AtsSample ats_sample(const torch::Tensor& scores, int64_t k, AtsVariant variant);
/// The same with a K per row (int64 B, each >= 1): rows of a batch whose K_n = rho * N_n differ.
AtsSample ats_sample(const torch::Tensor& scores, const torch::Tensor& k, AtsVariant variant);

/// K of a block with n input tokens (CLS included): `tokens` when rho is 0, else
/// max(round(rho * n), 8) (§7.3.4.1); never below 1.
int64_t ats_budget(int64_t tokens, double rho, int64_t n);

/// ToMe's bipartite soft matching of one batch: tokens alternate between sets A (even) and B
/// (odd); each A token's most similar B token (cosine of `metric`) is its edge; the r edges
/// of highest similarity are merged. With protect_first the first token (CLS, in A) is never
/// merged. Tokens of size 0 (padding) are never chosen while a real token can be.
struct TomeMatch {
  torch::Tensor unmerged;  ///< int64 B x (|A| - r) x 1: A tokens kept, in token order
  torch::Tensor source;    ///< int64 B x r x 1: A tokens merged
  torch::Tensor target;    ///< int64 B x r x 1: the B token each merges into
  int64_t r = 0;
};
/// metric: B x n x c; sizes: B x n (or undefined: all 1). r is clipped to (n - protected) / 2.
TomeMatch tome_match(const torch::Tensor& metric, int64_t r, const torch::Tensor& sizes, bool protect_first);
/// Applies a match to x (B x n x c): [unmerged A tokens, B tokens with their sources summed].
torch::Tensor tome_merge_sum(const TomeMatch& m, const torch::Tensor& x);
/// Size-weighted merge: x' = merge(x * s) / merge(s), s' = merge(s) (0 for padding stays 0).
std::pair<torch::Tensor, torch::Tensor> tome_merge_weighted(const TomeMatch& m, const torch::Tensor& x,
                                                            const torch::Tensor& sizes);

}  // namespace holo::models
