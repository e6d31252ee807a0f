#pragma once
/// The decoding that a clip loader does when it seeks to the keyframe before a clip and decodes
/// every frame forward (as the PyAV, PySlowFast and torchvision loaders do), timed with
/// libavcodec alone: no conversion, no scaling, no copy of a frame, one decoder thread.
/// `holo bench decode` prints it beside the loaders' figures, so that the share of a loader's
/// time that is decoding is a measurement, not an estimate. A loader that skips unrequested
/// non-reference frames (Holo) decodes less than this.
///
/// Per file: the container is opened once, as the loaders in the benchmark keep their files
/// open. Per clip: `av_seek_frame` to the first wanted frame's timestamp with
/// `AVSEEK_FLAG_BACKWARD` (the keyframe at or before it, as PyAV's `container.seek(pts,
/// backward=True, any_frame=False)` does), a codec flush, then every packet is sent and every
/// frame received until the one presented at the clip's last frame. Opening the files and
/// reading their frame tables are not timed.

#include <cstdint>
#include <string>
#include <vector>

namespace holo::pipeline {

struct DecodeFloor {
  int64_t clips = 0;
  int64_t frames_decoded = 0;  ///< frames the codec returned, the clips' own and those before them
  double seconds = 0;          ///< wall time of the seeks and decoding, summed over clips
};

/// Times the clips `starts[i]` of `files[i]` (each `frames` frames `stride` apart, the last one
/// clamped to the file's last frame) as described above. Throws DecodeError naming the file
/// when it cannot be opened or decoded, when a clip's last frame never comes out, or when its
/// packets do not all carry their own presentation timestamp (AVI with B-frames, MPEG program
/// streams), which this measurement names frames by.
DecodeFloor time_decode_floor(const std::vector<std::string>& files,
                              const std::vector<std::vector<int64_t>>& starts, int frames,
                              int stride);

}  // namespace holo::pipeline
