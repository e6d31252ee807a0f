#include "pipeline/clip.h"

#include <cmath>
#include <memory>

namespace holo::pipeline {

torch::Tensor frames_to_tensor(FrameBuffer&& frames) {
  auto owner = std::make_shared<ByteBuffer>(std::move(frames.data));
  uint8_t* data = owner->data();
  return torch::from_blob(data, {frames.count, frames.height, frames.width, 3},
                          [owner](void*) mutable { owner.reset(); }, torch::kUInt8);
}

torch::Tensor transform_clip(const torch::Tensor& frames, const ClipRequest& r, torch::Tensor out) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3, "transform_clip expects T x H x W x 3 frames");
  TORCH_CHECK(frames.scalar_type() == torch::kUInt8, "transform_clip expects uint8 frames");
  const torch::Tensor in = frames.contiguous();  // decoded frames already are: no copy
  const int64_t t_n = in.size(0), h = in.size(1), w = in.size(2);
  int64_t y0 = 0, x0 = 0, out_h = h, out_w = w;
  if (r.crop_size > 0) {
    TORCH_CHECK(r.crop_size <= h && r.crop_size <= w, "crop ", r.crop_size, " is larger than the frames (", h, "x", w, ")");
    double fx = r.crop_x, fy = r.crop_y;
    if (r.crop_along_long_side) {
      fy = h > w ? r.crop_x : 0.5;
      fx = h > w ? 0.5 : r.crop_x;
    }
    y0 = std::llround(fy * static_cast<double>(h - r.crop_size));
    x0 = std::llround(fx * static_cast<double>(w - r.crop_size));
    out_h = out_w = r.crop_size;
  }
  // One pass from uint8 T x H x W x 3 to float C x T x H x W: crop, flip and normalisation
  // are a table lookup per channel. The table holds float(u) / 255 and then (v - mean) / std,
  // the same float operations in the same order as the tensor expression
  // `x.float().div_(255).sub_(mean).div_(std)` that this replaces (bit-identical, tested);
  // that expression made five passes over the clip (conversion, three in-place passes, the
  // transposing copy).
  if (r.normalize) TORCH_CHECK(r.mean.size() == 3 && r.std.size() == 3, "mean and std need 3 values");
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    const float mean = r.normalize ? static_cast<float>(r.mean[c]) : 0.0f;
    const float std = r.normalize ? static_cast<float>(r.std[c]) : 1.0f;
    for (int u = 0; u < 256; ++u) {
      float v = static_cast<float>(u) / 255.0f;
      if (r.normalize) v = (v - mean) / std;
      table[c][u] = v;
    }
  }
  if (out.defined()) {
    TORCH_CHECK(out.scalar_type() == torch::kFloat32 && out.is_contiguous() &&
                    out.sizes() == torch::IntArrayRef({3, t_n, out_h, out_w}),
                "transform_clip: the output must be a contiguous float tensor of size 3 x ", t_n,
                " x ", out_h, " x ", out_w, ", not ", out.sizes());
  } else {
    out = torch::empty({3, t_n, out_h, out_w}, torch::kFloat32);
  }
  const uint8_t* src = in.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  const int64_t plane = t_n * out_h * out_w;
  for (int64_t t = 0; t < t_n; ++t) {
    for (int64_t y = 0; y < out_h; ++y) {
      const uint8_t* row = src + ((t * h + y0 + y) * w + x0) * 3;
      float* o0 = dst + (t * out_h + y) * out_w;
      float* o1 = o0 + plane;
      float* o2 = o1 + plane;
      // Flipped: the output row reads the crop's row from its last pixel back.
      const uint8_t* first = r.flip ? row + (out_w - 1) * 3 : row;
      const int64_t step = r.flip ? -3 : 3;
      for (int64_t x = 0; x < out_w; ++x) {
        const uint8_t* p = first + x * step;
        o0[x] = table[0][p[0]];
        o1[x] = table[1][p[1]];
        o2[x] = table[2][p[2]];
      }
    }
  }
  return out;
}

torch::Tensor read_clip(VideoDecoder& decoder, const ClipRequest& request, torch::Tensor out) {
  return transform_clip(
      frames_to_tensor(decoder.decode(request.frames, static_cast<int>(request.short_side))),
      request, std::move(out));
}

torch::Tensor read_clip(const VideoRecord& record, const ClipRequest& request, DecoderCache* cache,
                        const DecoderOptions& options) {
  if (cache != nullptr) return read_clip(cache->get(record.path), request);
  auto decoder = open_decoder(record.path, options);
  return read_clip(*decoder, request);
}

torch::Tensor read_frames_at(const VideoRecord& record, const std::vector<double>& seconds, int64_t short_side,
                             DecoderCache* cache, const DecoderOptions& options) {
  std::unique_ptr<VideoDecoder> own;
  VideoDecoder* d = nullptr;
  if (cache != nullptr) {
    d = &cache->get(record.path);
  } else {
    own = open_decoder(record.path, options);
    d = own.get();
  }
  std::vector<int64_t> frames;
  for (double s : seconds) frames.push_back(d->info().frame_at(s));
  return frames_to_tensor(d->decode(frames, static_cast<int>(short_side)));
}

}  // namespace holo::pipeline
