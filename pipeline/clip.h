#pragma once
/// Reading clips as tensors: the one place where decoded frames become torch tensors.
/// Tasks use these directly, e.g. the 2D->3D transfer reads single frames at given times.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "pipeline/dataset.h"
#include "pipeline/decoder.h"
#include "pipeline/sampling.h"

namespace holo::pipeline {

/// Wraps decoded frames as uint8 T x H x W x 3 (takes over the buffer, no copy).
torch::Tensor frames_to_tensor(FrameBuffer&& frames);

/// Crop, flip and normalise uint8 T x H x W x 3 frames as `request` says; float C x T x H x W.
/// Written into `out` when it is given (a contiguous float tensor of that shape, e.g. a batch's
/// slot), which is returned.
torch::Tensor transform_clip(const torch::Tensor& frames, const ClipRequest& request,
                             torch::Tensor out = {});

/// Decodes and transforms one clip: float C x T x H x W (into `out` when given).
torch::Tensor read_clip(VideoDecoder& decoder, const ClipRequest& request, torch::Tensor out = {});
/// Same, opening the record's file (through `cache` when given).
torch::Tensor read_clip(const VideoRecord& record, const ClipRequest& request, DecoderCache* cache = nullptr,
                        const DecoderOptions& options = {});

/// The frames shown at `seconds` (after the first frame) as uint8 N x H x W x 3, scaled to
/// `short_side` (0: unscaled). For 2D models fed with single frames.
torch::Tensor read_frames_at(const VideoRecord& record, const std::vector<double>& seconds, int64_t short_side,
                             DecoderCache* cache = nullptr, const DecoderOptions& options = {});

}  // namespace holo::pipeline
