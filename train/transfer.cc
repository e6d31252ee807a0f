// 2D->3D knowledge transfer (thesis ch. 4.3) as a task of the shared training loop.
//
// A frozen 2D teacher (a torchvision-named ResNet loaded from task.teacher) and the 3D student
// (the recipe's network) see the same moment of a video: the teacher X frames of it (averaged
// features), the student the clip. Pairs from the same video and time are positive; the
// teacher side of a negative comes from another video of the batch. Both feature vectors are
// concatenated and classified by the transfer head (2048 -> 512 -> 128 -> 2), with cross
// entropy over the two classes. Only the student and the head learn.
//
// The teacher's per-frame features are computed once, before training, over every frame of
// every video (centre crop at transform.test_scale), and kept in the HDF5 feature store at
// <run dir>/teacher_features keyed by video id and frame; a resumed run reads them back.
// The frames a student clip used are recomputed from the loader's pure sampling function.

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
#include "train/task.h"

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

class TransferTask : public Task {
 public:
  TransferTask(const Recipe& recipe, const pipeline::Dataset& dataset)
      : recipe_(recipe),
        teacher_(models::ResNet2dOptions(teacher_depth(recipe.task.teacher_arch))
                     .num_classes(0)
                     .width(recipe.task.teacher_width)) {
    if (recipe.task.teacher.empty()) {
      throw RecipeError("recipe", 0, 0, "task.teacher", "2D->3D transfer needs a teacher weights file");
    }
    models::load_torchvision_resnet(*teacher_, recipe.task.teacher);
    teacher_->eval();
    for (auto& p : teacher_->parameters()) p.set_requires_grad(false);
    frames_.assign(dataset.records().size(), 0);
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
    const std::string store = (fs::path(run_dir_path(recipe)) / "teacher_features").string();
    pipeline::DecoderCache cache(4, pipeline::DecoderOptions{});
    const auto& records = dataset.records();
    const int64_t n = static_cast<int64_t>(records.size());
    // Frame counts, needed to recompute the student's frames.
    for (int64_t r = 0; r < n; ++r) frames_[r] = cache.get(records[r].path).info().frames;

    // A store from an earlier attempt of this run is used when it holds every frame of every
    // video; otherwise it is made anew (an interrupted computation leaves it incomplete).
    bool complete = fs::exists(fs::path(store) / "index.h5");
    if (complete) {
      pipeline::FeatureReader existing(store);
      for (int64_t r = 0; r < n && complete; ++r) complete = existing.contains(records[r].id, frames_[r] - 1);
    }
    if (!complete) {
      comm.barrier();
      if (comm.rank() == 0) fs::remove_all(store);
      comm.barrier();
      pipeline::FeatureWriter writer(store, comm.rank());
      holo::Progress progress({"teacher features", (n + comm.size() - 1) / comm.size(), "videos"});
      torch::NoGradGuard no_grad;
      for (int64_t r = comm.rank(); r < n; r += comm.size()) {
        pipeline::ClipRequest req = pipeline::test_clip(recipe, frames_[r], 0);
        req.frames.clear();
        for (int64_t f = 0; f < frames_[r]; ++f) req.frames.push_back(f);
        const torch::Tensor clip = pipeline::read_clip(records[r], req, &cache);  // C x T x H x W
        const torch::Tensor images = clip.permute({1, 0, 2, 3}).contiguous().to(device_);
        const torch::Tensor feats = teacher_->features(images).to(torch::kCPU);
        for (int64_t f = 0; f < frames_[r]; ++f) writer.write(records[r].id, f, feats[f]);
        progress.advance();
      }
      writer.close();
      comm.barrier();
      if (comm.rank() == 0) {
        const int64_t keys = pipeline::write_feature_index(store);
        spdlog::info("teacher features: {} frames of {} videos cached in {}", keys, n, store);
      }
    } else {
      spdlog::info("teacher features: reusing {}", store);
    }
    comm.barrier();
    // Every rank keeps every video's frame features in memory for pair building.
    pipeline::FeatureReader reader(store);
    features_.resize(n);
    for (int64_t r = 0; r < n; ++r) {
      std::vector<torch::Tensor> per_frame;
      for (int64_t f = 0; f < frames_[r]; ++f) {
        if (!reader.contains(records[r].id, f)) {
          throw IoError("teacher feature store '" + store + "' lacks video '" + records[r].id + "' frame " +
                        std::to_string(f));
        }
        per_frame.push_back(reader.read(records[r].id, f));
      }
      features_[r] = torch::stack(per_frame);  // frames x D
    }
  }

  torch::Tensor loss(const models::NetworkOutput& out, const pipeline::Batch& batch,
                     Stats& stats) const override {
    const int64_t n = static_cast<int64_t>(batch.indices.size());
    // Teacher side of the positives: the X frames spread over the frames the clip used.
    std::vector<torch::Tensor> teacher;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = batch.indices[i];
      const int64_t view = batch.views.empty() ? 0 : batch.views[i];
      const auto req = pipeline::train_clip(recipe_, frames_[r], epoch_, r, view);
      teacher.push_back(teacher_features(r, req.frames));
    }
    // Negatives: a share task.negative_ratio of the pairs takes the teacher side of the next
    // clip in the batch that comes from another video.
    std::vector<torch::Tensor> t_side;
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
      t_side.push_back(teacher[j]);
      labels.push_back(j == i ? 1 : 0);
    }
    const torch::Tensor t = torch::stack(t_side).to(out.features.device(), out.features.scalar_type());
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
  torch::Tensor teacher_features(int64_t record, const std::vector<int64_t>& clip_frames) const {
    const int64_t x = std::min<int64_t>(recipe_.task.teacher_frames, static_cast<int64_t>(clip_frames.size()));
    std::vector<int64_t> pick;
    for (int64_t i = 0; i < x; ++i) {
      // Evenly spread: the centre of each of x equal parts of the clip.
      const int64_t k = (2 * i + 1) * static_cast<int64_t>(clip_frames.size()) / (2 * x);
      pick.push_back(std::min<int64_t>(clip_frames[k], features_[record].size(0) - 1));
    }
    return features_[record].index_select(0, torch::tensor(pick, torch::kInt64)).mean(0);
  }

  Recipe recipe_;
  models::ResNet2d teacher_;
  mutable models::TransferHead head_{nullptr};
  torch::Device device_ = torch::kCPU;
  std::vector<int64_t> frames_;
  std::vector<torch::Tensor> features_;
  int64_t epoch_ = 0;
};

}  // namespace

std::unique_ptr<Task> make_transfer_task(const Recipe& recipe, const pipeline::Dataset& dataset) {
  return std::make_unique<TransferTask>(recipe, dataset);
}

}  // namespace holo::train
