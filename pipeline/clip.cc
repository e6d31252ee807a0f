#include "pipeline/clip.h"

#include <cmath>
#include <memory>

namespace holo::pipeline {

torch::Tensor frames_to_tensor(FrameBuffer&& frames) {
  auto owner = std::make_shared<std::vector<uint8_t>>(std::move(frames.data));
  uint8_t* data = owner->data();
  return torch::from_blob(data, {frames.count, frames.height, frames.width, 3},
                          [owner](void*) mutable { owner.reset(); }, torch::kUInt8);
}

torch::Tensor transform_clip(const torch::Tensor& frames, const ClipRequest& r) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3, "transform_clip expects T x H x W x 3 frames");
  torch::Tensor x = frames;
  const int64_t h = x.size(1), w = x.size(2);
  if (r.crop_size > 0) {
    TORCH_CHECK(r.crop_size <= h && r.crop_size <= w, "crop ", r.crop_size, " is larger than the frames (", h, "x", w, ")");
    double fx = r.crop_x, fy = r.crop_y;
    if (r.crop_along_long_side) {
      fy = h > w ? r.crop_x : 0.5;
      fx = h > w ? 0.5 : r.crop_x;
    }
    const int64_t y0 = std::llround(fy * static_cast<double>(h - r.crop_size));
    const int64_t x0 = std::llround(fx * static_cast<double>(w - r.crop_size));
    x = x.slice(1, y0, y0 + r.crop_size).slice(2, x0, x0 + r.crop_size);
  }
  if (r.flip) x = x.flip({2});
  x = x.permute({3, 0, 1, 2}).to(torch::kFloat32).div_(255.0);  // C x T x H x W
  if (r.normalize) {
    TORCH_CHECK(r.mean.size() == 3 && r.std.size() == 3, "mean and std need 3 values");
    const auto mean = torch::tensor(std::vector<float>(r.mean.begin(), r.mean.end())).view({3, 1, 1, 1});
    const auto std = torch::tensor(std::vector<float>(r.std.begin(), r.std.end())).view({3, 1, 1, 1});
    x = x.sub_(mean).div_(std);
  }
  return x.contiguous();
}

torch::Tensor read_clip(VideoDecoder& decoder, const ClipRequest& request) {
  return transform_clip(frames_to_tensor(decoder.decode(request.frames, static_cast<int>(request.short_side))), request);
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
