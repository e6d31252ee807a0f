#include "pipeline/sampling.h"

#include <algorithm>
#include <cmath>

#include "core/recipe.h"
#include "pipeline/random.h"

namespace holo::pipeline {
namespace {

/// Distinguishes the loader's streams of draws from those of other components.
constexpr uint64_t kClipStream = 0xc11b;
constexpr uint64_t kOrderStream = 0x0bde;

}  // namespace

std::vector<int64_t> clip_frames(int64_t frames, int64_t start, int64_t count, int64_t stride) {
  std::vector<int64_t> out(count);
  for (int64_t i = 0; i < count; ++i) out[i] = std::clamp<int64_t>(start + i * stride, 0, std::max<int64_t>(0, frames - 1));
  return out;
}

ClipSampling clip_sampling(const Recipe& recipe) {
  return ClipSampling{recipe.sampling, recipe.transform, static_cast<uint64_t>(recipe.run.seed)};
}

ClipRequest train_clip(const ClipSampling& options, int64_t frames, int64_t epoch, int64_t record, int64_t view) {
  const auto& s = options.sampling;
  const auto& t = options.transform;
  Rng rng(mix_seed(options.seed ^ kClipStream, static_cast<uint64_t>(epoch),
                   static_cast<uint64_t>(record), static_cast<uint64_t>(view)));
  const int64_t span = (s.num_frames - 1) * s.stride + 1;
  ClipRequest c;
  const int64_t start = rng.uniform_int(std::max<int64_t>(0, frames - span) + 1);
  c.frames = clip_frames(frames, start, s.num_frames, s.stride);
  c.short_side = t.train_scale_min + rng.uniform_int(t.train_scale_max - t.train_scale_min + 1);
  c.crop_size = t.crop_size;
  c.crop_x = rng.uniform();
  c.crop_y = rng.uniform();
  const bool flip = rng.uniform() < 0.5;  // drawn always, so the flag does not shift other draws
  c.flip = t.flip && flip;
  c.mean = t.mean;
  c.std = t.std;
  return c;
}

ClipRequest test_clip(const ClipSampling& options, int64_t frames, int64_t view) {
  const auto& s = options.sampling;
  const auto& t = options.transform;
  const int64_t clip = view / s.test_crops, crop = view % s.test_crops;
  const int64_t span = (s.num_frames - 1) * s.stride + 1;
  const int64_t free = std::max<int64_t>(0, frames - span);
  const int64_t start = s.test_clips == 1 ? free / 2
                                          : static_cast<int64_t>(std::llround(static_cast<double>(clip) * free / (s.test_clips - 1)));
  ClipRequest c;
  c.frames = clip_frames(frames, start, s.num_frames, s.stride);
  c.short_side = t.test_scale;
  c.crop_size = t.crop_size;
  c.crop_along_long_side = true;
  c.crop_x = s.test_crops == 1 ? 0.5 : 0.5 * static_cast<double>(crop);  // start, centre, end
  c.crop_y = 0.5;
  c.mean = t.mean;
  c.std = t.std;
  return c;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  Rng rng(mix_seed(seed ^ kOrderStream, static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.uniform_int(i + 1)]);
  return order;
}

}  // namespace holo::pipeline
