// 2D->3D knowledge transfer (thesis ch. 4.3) as a task of the shared training loop.
//
// A frozen 2D teacher (a torchvision-named ResNet loaded from task.teacher) and the 3D student
// (the recipe's network) see the same moment of a video: the teacher X frames of it, the
// student the clip. Pairs from the same video and time are positive; the teacher side of a
// negative comes from another video of the batch. The transfer head (models::TransferHead)
// maps the teacher's per-frame features to 1024-D fc features averaged over the X frames and
// the student's to a 1024-D fc feature, concatenates them and classifies the 2048-D pair
// (2048 -> 512 -> 128 -> 2) with cross entropy over the two classes. Only the student and the
// head learn.
//
// task.teacher_source picks where the teacher's features come from:
//   online  the teacher runs on X frames of the student's own clip, after the same crop, scale
//           and flip (§4.3: "given X frames and a video clip ... for the same time stamp");
//           nothing is kept between steps, so memory does not grow with the number of videos.
//   store   every frame's features (centre crop at transform.test_scale) are computed once into
//           the HDF5 feature store at <run dir>/teacher_features, one dataset per video, and
//           each step reads the datasets of its batch's videos only. Cheaper per step with a
//           large teacher; the teacher then sees the centre crop, not the student's.

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "core/run_dir.h"
#include "dist/communicator.h"
#include "models/resnet2d.h"
#include "pipeline/clip.h"
#include "pipeline/decoder.h"
#include "pipeline/feature_store.h"
#include "pipeline/sampling.h"
#include "train/video_task.h"

namespace holo::train {
namespace fs = std::filesystem;
namespace {

int64_t teacher_depth(const std::string& arch) {
  if (arch == "resnet18") return 18;
  if (arch == "resnet34") return 34;
  if (arch == "resnet50") return 50;
  if (arch == "resnet101") return 101;
  throw Error("task.teacher_arch '" + arch + "' is not a ResNet of 18, 34, 50 or 101 layers");
}

class TransferTask : public VideoTask {
 public:
  TransferTask(const Recipe& recipe, const pipeline::Dataset& dataset)
      : recipe_(recipe),
        teacher_(models::ResNet2dOptions(teacher_depth(recipe.task.teacher_arch))
                     .num_classes(0)
                     .width(recipe.task.teacher_width)),
        online_(recipe.task.teacher_source == "online") {
    if (recipe.task.teacher.empty()) {
      throw RecipeError("recipe", 0, 0, "task.teacher", "2D->3D transfer needs a teacher weights file");
    }
    if (!online_ && recipe.task.teacher_source != "store") {
      throw RecipeError("recipe", 0, 0, "task.teacher_source",
                        "unknown source '" + recipe.task.teacher_source + "' (online, store)");
    }
    models::load_torchvision_resnet(*teacher_, recipe.task.teacher);
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.set_requires_grad(false);
    ids_.reserve(dataset.records().size());
    for (const auto& r : dataset.records()) ids_.push_back(r.id);
  }

  // The student keeps a 2-way head of its own (unused here; fine-tuning replaces it), so its
  // interface stays that of every other network.
  std::vector<int64_t> head_sizes() const override { return {2}; }

  std::shared_ptr<torch::nn::Module> module() override { return head_.ptr(); }

  bool validates() const override { return false; }

  void set_epoch(int64_t epoch) override { epoch_ = epoch; }

  void prepare(const Recipe& recipe, const pipeline::Dataset& dataset, models::NetworkImpl& network,
               const torch::Device& device, dist::Communicator& comm) override {
    device_ = device;
    teacher_->to(device);
    head_ = models::TransferHead(teacher_->feature_dim(), network.feature_dim());
    if (online_) {
      spdlog::info("transfer: the teacher sees {} frames of each student clip, after the same crop",
                   recipe.task.teacher_frames);
      return;
    }
    const std::string store = (fs::path(run_dir_path(recipe)) / "teacher_features").string();
    const auto& records = dataset.records();
    const int64_t n = static_cast<int64_t>(records.size());

    // A store from an earlier attempt of this run is used when it holds every video; otherwise
    // it is made anew (an interrupted computation leaves it incomplete).
    bool complete = fs::exists(fs::path(store) / "index.h5");
    if (complete) {
      pipeline::FeatureReader existing(store);
      for (int64_t r = 0; r < n && complete; ++r) complete = existing.contains(records[r].id);
    }
    if (!complete) {
      comm.barrier();
      if (comm.rank() == 0) fs::remove_all(store);
      comm.barrier();
      pipeline::FeatureWriter writer(store, comm.rank());
      pipeline::DecoderCache cache(4, pipeline::DecoderOptions{});
      holo::Progress progress({"teacher features", (n + comm.size() - 1) / comm.size(), "videos"});
      torch::NoGradGuard no_grad;
      for (int64_t r = comm.rank(); r < n; r += comm.size()) {
        // The frames the loader samples from (a manifest's count where there is one).
        const int64_t frames = pipeline::sampling_frames(records[r], cache.get(records[r].path).info());
        pipeline::ClipRequest req = pipeline::test_clip(recipe, frames, 0);
        req.frames.clear();
        std::vector<torch::Tensor> feats;
        // In pieces of 64 frames: a long video does not hold all its decoded frames at once.
        for (int64_t f0 = 0; f0 < frames; f0 += 64) {
          req.frames.clear();
          for (int64_t f = f0; f < std::min<int64_t>(frames, f0 + 64); ++f) req.frames.push_back(f);
          const torch::Tensor clip = pipeline::read_clip(records[r], req, &cache);  // C x T x H x W
          const torch::Tensor images = clip.permute({1, 0, 2, 3}).contiguous().to(device_);
          feats.push_back(teacher_->features(images).to(torch::kCPU));
        }
        writer.write(records[r].id, torch::cat(feats));  // frames x D
        progress.advance();
      }
      writer.close();
      comm.barrier();
      if (comm.rank() == 0) {
        const int64_t keys = pipeline::write_feature_index(store);
        spdlog::info("teacher features: {} videos in {}", keys, store);
      }
    } else {
      spdlog::info("teacher features: reusing {}", store);
    }
    comm.barrier();
    // Read as training needs them: a step reads its batch's videos only.
    reader_ = std::make_unique<pipeline::FeatureReader>(store);
    store_ = store;
  }

  torch::Tensor loss(const models::NetworkOutput& out, const pipeline::Batch& batch,
                     Stats& stats) const override {
    const int64_t n = static_cast<int64_t>(batch.indices.size());
    // Teacher side of the positives: X frames of the moment the student's clip shows.
    const torch::Tensor teacher = online_ ? teacher_online(batch) : teacher_from_store(batch);  // N x X x D2
    // Negatives: a share task.negative_ratio of the pairs takes the teacher side of the next
    // clip in the batch that comes from another video.
    std::vector<int64_t> pick;
    std::vector<int64_t> labels;
    const int64_t negatives = static_cast<int64_t>(std::llround(recipe_.task.negative_ratio * n));
    for (int64_t i = 0; i < n; ++i) {
      int64_t j = i;
      if (i < negatives) {
        for (int64_t k = 1; k < n; ++k) {
          if (batch.indices[(i + k) % n] != batch.indices[i]) {
            j = (i + k) % n;
            break;
          }
        }
      }
      pick.push_back(j);
      labels.push_back(j == i ? 1 : 0);
    }
    const torch::Tensor t = teacher.index_select(0, torch::tensor(pick, torch::kInt64).to(teacher.device()))
                                .to(out.features.device(), out.features.scalar_type());
    const torch::Tensor y = torch::tensor(labels, torch::kInt64).to(out.features.device());
    const torch::Tensor logits = head_->forward(t, out.features);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), y);
    stats["loss"] += loss.item<double>() * n;
    stats["acc"] += logits.argmax(1).eq(y).sum().item<double>();
    stats["count"] += n;
    return loss;
  }

  torch::Tensor scores(const models::NetworkOutput& out) const override {
    return torch::softmax(out.logits.at(0).to(torch::kFloat32), 1);
  }
  Stats evaluate(const torch::Tensor&, const torch::Tensor&) const override { return {}; }
  std::string score_key() const override { return "acc"; }
  std::vector<std::vector<std::string>> per_class(const torch::Tensor&, const torch::Tensor&) const override {
    return {};
  }
  std::vector<std::string> mean_keys() const override { return {"loss", "acc"}; }

 private:
  /// x positions evenly spread over `count` (the centre of each of x equal parts).
  static std::vector<int64_t> spread(int64_t x, int64_t count) {
    std::vector<int64_t> out;
    for (int64_t i = 0; i < x; ++i) out.push_back((2 * i + 1) * count / (2 * x));
    return out;
  }

  /// N x X x D2: the teacher's features of X frames of each clip of the batch, as the student
  /// saw them (the batch's own, transformed frames).
  torch::Tensor teacher_online(const pipeline::Batch& batch) const {
    const torch::Tensor& clips = batch.clips;  // N x C x T x H x W
    const int64_t n = clips.size(0), c = clips.size(1), t = clips.size(2), h = clips.size(3), w = clips.size(4);
    const int64_t x = std::min<int64_t>(recipe_.task.teacher_frames, t);
    const auto idx = torch::tensor(spread(x, t), torch::kInt64);
    torch::NoGradGuard no_grad;
    const torch::Tensor frames = clips.index_select(2, idx).permute({0, 2, 1, 3, 4}).reshape({n * x, c, h, w});
    const torch::Tensor f = teacher_->features(frames.to(device_));
    return f.view({n, x, f.size(1)});
  }

  /// N x X x D2 from the store: X frames spread over the frames the clip used (recomputed
  /// from the loader's pure sampling function), read with the video's dataset.
  torch::Tensor teacher_from_store(const pipeline::Batch& batch) const {
    std::vector<torch::Tensor> out;
    for (size_t i = 0; i < batch.indices.size(); ++i) {
      const int64_t r = batch.indices[i];
      const int64_t view = batch.views.empty() ? 0 : batch.views[i];
      if (!reader_->contains(ids_[r])) {
        throw IoError("teacher feature store '" + store_ + "' lacks video '" + ids_[r] + "'");
      }
      const torch::Tensor video = reader_->read(ids_[r]);  // frames x D
      const auto req = pipeline::train_clip(recipe_, video.size(0), epoch_, r, view);
      const int64_t x = std::min<int64_t>(recipe_.task.teacher_frames, static_cast<int64_t>(req.frames.size()));
      std::vector<int64_t> pick;
      for (int64_t k : spread(x, static_cast<int64_t>(req.frames.size()))) {
        pick.push_back(std::min<int64_t>(req.frames[k], video.size(0) - 1));
      }
      out.push_back(video.index_select(0, torch::tensor(pick, torch::kInt64)));
    }
    return torch::stack(out).to(device_);
  }

  Recipe recipe_;
  mutable models::ResNet2d teacher_;
  bool online_;
  mutable models::TransferHead head_{nullptr};
  torch::Device device_ = torch::kCPU;
  std::vector<std::string> ids_;
  std::unique_ptr<pipeline::FeatureReader> reader_;
  std::string store_;
  int64_t epoch_ = 0;
};

}  // namespace

std::unique_ptr<VideoTask> make_transfer_task(const Recipe& recipe, const pipeline::Dataset& dataset) {
  return std::make_unique<TransferTask>(recipe, dataset);
}

}  // namespace holo::train
