// The loader: deterministic draws, disjoint shards covering the epoch, state round trip onto
// another world size, test views, frame-exact clips with stride, and every kind of bad input.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/recipe.h"
#include "pipeline/clip.h"
#include "pipeline/loader.h"
#include "pipeline/synth.h"
#include "pipeline/video_writer.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {

using ::testing::HasSubstr;

class Loader : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* root = std::getenv("HOLO_TEST_TMP");
    dir_ = new std::string((fs::path(root ? root : "/tmp/holo-test") / "Loader.shared").string());
    fs::remove_all(*dir_);
    synthesize(SynthOptions().set_out(*dir_ + "/motion").set_videos(12).set_classes(3).set_frames(20).set_size(64, 48).set_seed(7));
  }
  static void TearDownTestSuite() { delete dir_; }

  static Recipe recipe() {
    Recipe r;
    r.run.seed = 11;
    r.data.dataset = "kinetics";
    r.data.root = *dir_ + "/motion/videos";
    r.data.train = *dir_ + "/motion/train.csv";
    r.data.val = *dir_ + "/motion/val.csv";
    r.sampling.num_frames = 4;
    r.sampling.stride = 2;
    r.sampling.test_clips = 2;
    r.sampling.test_crops = 3;
    r.transform.crop_size = 32;
    r.transform.train_scale_min = 34;
    r.transform.train_scale_max = 44;
    r.transform.test_scale = 36;
    r.loader.batch_size = 2;
    r.loader.workers = 2;
    r.loader.prefetch = 2;
    return r;
  }

  /// Every batch of the rest of the epoch.
  static std::vector<Batch> drain(ClipLoader& l) {
    std::vector<Batch> out;
    while (auto b = l.next()) out.push_back(std::move(*b));
    return out;
  }

  static std::string* dir_;
};
std::string* Loader::dir_ = nullptr;

TEST_F(Loader, SameSeedSameBatchesWhateverTheWorkers) {
  auto ds = make_dataset(recipe(), "train");
  ASSERT_EQ(ds->records().size(), 9u);  // 12 videos, 3 of them in val
  Recipe sync = recipe();
  sync.loader.workers = 0;
  ClipLoader a(ds, recipe(), LoaderMode::kTrain, 0, 1), b(ds, sync, LoaderMode::kTrain, 0, 1);
  EXPECT_EQ(a.batches_per_epoch(), 4);  // 9 / 2, drop_last
  const auto ba = drain(a), bb = drain(b);
  ASSERT_EQ(ba.size(), 4u);
  ASSERT_EQ(bb.size(), 4u);
  for (size_t i = 0; i < ba.size(); ++i) {
    EXPECT_EQ(ba[i].indices, bb[i].indices);
    EXPECT_TRUE(torch::equal(ba[i].clips, bb[i].clips)) << "batch " << i;
    EXPECT_EQ(ba[i].clips.sizes(), (std::vector<int64_t>{2, 3, 4, 32, 32}));
    EXPECT_EQ(ba[i].labels.dtype(), torch::kInt64);
    for (int64_t j = 0; j < 2; ++j) EXPECT_EQ(ba[i].labels[j].item<int64_t>(), ds->records()[ba[i].indices[j]].label);
  }
  // Each slot of a batch holds its own record's clip, as read alone.
  for (const Batch& batch : ba) {
    for (int64_t j = 0; j < 2; ++j) {
      const auto& rec = ds->records()[batch.indices[j]];
      auto d = open_decoder(rec.path, DecoderOptions());
      const ClipRequest c = train_clip(recipe(), sampling_frames(rec, d->info()), 0,
                                       batch.indices[j], batch.views[j]);
      EXPECT_TRUE(torch::equal(batch.clips[j], read_clip(*d, c))) << rec.path;
    }
  }
  // Another epoch is another order.
  a.set_epoch(1);
  const auto e1 = drain(a);
  std::vector<int64_t> o0, o1;
  for (auto& x : ba) o0.insert(o0.end(), x.indices.begin(), x.indices.end());
  for (auto& x : e1) o1.insert(o1.end(), x.indices.begin(), x.indices.end());
  EXPECT_NE(o0, o1);
}

// A batch's tensor is reused for a later batch only once nothing refers to it: not while the
// batch or a view of it is alive. A reused tensor holds the later batch's clips, whole.
TEST_F(Loader, BatchTensorsAreReusedOnlyOnceDropped) {
  auto ds = make_dataset(recipe(), "train");
  Recipe r = recipe();
  r.loader.workers = 0;  // built in next(), one at a time
  ClipLoader l(ds, r, LoaderMode::kTrain, 0, 1);
  const auto clip_of = [&](const Batch& b, int64_t j, int64_t epoch = 0) {
    const auto& rec = ds->records()[b.indices[j]];
    auto d = open_decoder(rec.path, DecoderOptions());
    return read_clip(
        *d, train_clip(r, sampling_frames(rec, d->info()), epoch, b.indices[j], b.views[j]));
  };
  auto b1 = l.next();
  auto b2 = l.next();
  ASSERT_TRUE(b1 && b2);
  const void* p1 = b1->clips.data_ptr();
  const void* p2 = b2->clips.data_ptr();
  EXPECT_NE(p2, p1);  // b1 is alive
  const torch::Tensor view = b1->clips[1];
  const torch::Tensor kept = view.clone();
  b1.reset();
  b2.reset();
  auto b3 = l.next();  // b2's tensor is free, b1's is not (the view)
  ASSERT_TRUE(b3);
  EXPECT_EQ(b3->clips.data_ptr(), p2);
  auto b4 = l.next();
  ASSERT_TRUE(b4);
  EXPECT_NE(b4->clips.data_ptr(), p1);
  EXPECT_NE(b4->clips.data_ptr(), p2);
  EXPECT_TRUE(torch::equal(view, kept));  // untouched by the later batches
  for (int64_t j = 0; j < 2; ++j) {
    EXPECT_TRUE(torch::equal(b3->clips[j], clip_of(*b3, j))) << "batch 3 clip " << j;
    EXPECT_TRUE(torch::equal(b4->clips[j], clip_of(*b4, j))) << "batch 4 clip " << j;
  }
  EXPECT_EQ(l.batch_tensors(), 3);  // b1's (kept by the view), b2's (reused by b3), b4's
  // A caller's changes to its batch tensor's shape stay with that batch.
  b3->clips.resize_({1});
  b3.reset();
  b4.reset();
  l.set_epoch(1);
  while (auto b = l.next()) {
    EXPECT_EQ(b->clips.sizes(), (std::vector<int64_t>{2, 3, 4, 32, 32}));
    for (int64_t j = 0; j < 2; ++j)
      EXPECT_TRUE(torch::equal(b->clips[j], clip_of(*b, j, 1))) << "epoch 1 clip " << j;
  }
  EXPECT_EQ(l.batch_tensors(), 3);  // one batch at a time: the free tensors served them all
}

// With workers building batches ahead, each batch dropped before the next is taken: the
// tensors are reused (no more than prefetch + workers + 2 for 12 batches) and every clip is
// its own.
TEST_F(Loader, ReusedBatchTensorsHoldTheirOwnClipsWithWorkers) {
  auto ds = make_dataset(recipe(), "train");
  const Recipe r = recipe();  // 2 workers, prefetch 2
  ClipLoader l(ds, r, LoaderMode::kTrain, 0, 1);
  int64_t batches = 0;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    l.set_epoch(epoch);
    while (auto b = l.next()) {
      ++batches;
      for (int64_t j = 0; j < 2; ++j) {
        const auto& rec = ds->records()[b->indices[j]];
        auto d = open_decoder(rec.path, DecoderOptions());
        const ClipRequest c =
            train_clip(r, sampling_frames(rec, d->info()), epoch, b->indices[j], b->views[j]);
        EXPECT_TRUE(torch::equal(b->clips[j], read_clip(*d, c)))
            << "epoch " << epoch << " " << rec.path;
      }
    }
  }
  EXPECT_EQ(batches, 12);
  EXPECT_LE(l.batch_tensors(), r.loader.prefetch + r.loader.workers + 2);
}

TEST_F(Loader, RanksSeeDisjointSamplesCoveringTheEpoch) {
  auto ds = make_dataset(recipe(), "train");
  for (int world : {2, 3}) {
    std::multiset<int64_t> seen;
    int64_t steps = -1;
    for (int r = 0; r < world; ++r) {
      ClipLoader l(ds, recipe(), LoaderMode::kTrain, r, world);
      if (steps < 0) steps = l.batches_per_epoch();
      EXPECT_EQ(l.batches_per_epoch(), steps);
      const auto batches = drain(l);
      EXPECT_EQ(static_cast<int64_t>(batches.size()), steps);
      for (auto& b : batches) seen.insert(b.indices.begin(), b.indices.end());
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), steps * world * 2) << world;
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), seen.size()) << "a sample seen twice, world " << world;
  }
  // Without drop_last every rank gets full batches: the last step wraps around to the start of
  // the order, and the ranks together see every record, the padding's few twice.
  Recipe keep = recipe();
  keep.loader.drop_last = false;
  const int64_t records = static_cast<int64_t>(ds->records().size());
  for (int world : {2, 3}) {
    std::multiset<int64_t> seen;
    int64_t steps = 0;
    for (int r = 0; r < world; ++r) {
      ClipLoader l(ds, keep, LoaderMode::kTrain, r, world);
      steps = l.batches_per_epoch();
      EXPECT_EQ(steps, (records + 2 * world - 1) / (2 * world)) << world;
      for (auto& b : drain(l)) {
        EXPECT_EQ(b.indices.size(), 2u);
        seen.insert(b.indices.begin(), b.indices.end());
      }
    }
    std::set<int64_t> all;
    for (int64_t i = 0; i < records; ++i) all.insert(i);
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()), all)
        << "the ranks missed a record, world " << world;
    EXPECT_EQ(static_cast<int64_t>(seen.size()), steps * world * 2) << world;
  }
}

TEST_F(Loader, StateResumesOnAnotherWorldSizeWithTheSameClips) {
  auto ds = make_dataset(recipe(), "train");
  Recipe r = recipe();
  r.loader.batch_size = 1;
  // Reference: one rank, the whole epoch 2.
  ClipLoader ref(ds, r, LoaderMode::kTrain, 0, 1);
  ref.set_epoch(2);
  std::map<int64_t, torch::Tensor> reference;
  std::vector<int64_t> order;
  for (auto& b : drain(ref)) {
    reference[b.indices[0]] = b.clips[0];
    order.push_back(b.indices[0]);
  }
  ASSERT_EQ(order.size(), 9u);
  // Two ranks take 2 steps (4 samples), save, and three ranks finish the epoch.
  std::vector<int64_t> first;
  LoaderState saved;
  for (int rank = 0; rank < 2; ++rank) {
    ClipLoader l(ds, r, LoaderMode::kTrain, rank, 2);
    l.set_epoch(2);
    for (int s = 0; s < 2; ++s) first.push_back(l.next()->indices[0]);
    saved = l.state();
  }
  EXPECT_EQ(saved.cursor, 4);
  EXPECT_EQ(saved.epoch, 2);
  std::vector<int64_t> rest(5, -1);
  // The resumed run's recipe names another run.seed: the saved seed rules both the order and
  // the clips' draws.
  Recipe resumed = r;
  resumed.run.seed = r.run.seed + 1;
  for (int rank = 0; rank < 3; ++rank) {
    ClipLoader l(ds, resumed, LoaderMode::kTrain, rank, 3);
    l.load_state(saved);
    int64_t step = 0;
    while (auto b = l.next()) {
      const int64_t pos = step * 3 + rank;
      ASSERT_LT(pos, 3);  // 5 left, drop_last: one whole step of 3
      rest[pos] = b->indices[0];
      EXPECT_TRUE(torch::equal(b->clips[0], reference[b->indices[0]])) << "record " << b->indices[0];
      ++step;
    }
    EXPECT_EQ(l.state().cursor, 7);
  }
  // Global order: rank-major within each step, as the reference saw it.
  EXPECT_EQ(first[0], order[0]);  // rank 0, step 0
  EXPECT_EQ(first[2], order[1]);  // rank 1, step 0
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rest[i], order[4 + i]) << i;
}

TEST_F(Loader, TestViewsCoverEveryClipAndCropOnce) {
  auto ds = make_dataset(recipe(), "val");
  ASSERT_EQ(ds->records().size(), 3u);
  std::set<std::pair<int64_t, int64_t>> seen;
  int64_t steps = -1;
  for (int rank = 0; rank < 2; ++rank) {
    ClipLoader l(ds, recipe(), LoaderMode::kTest, rank, 2);
    EXPECT_EQ(l.views_per_record(), 6);
    if (steps < 0) steps = l.batches_per_epoch();
    EXPECT_EQ(steps, 5);  // 18 views / (2 ranks x 2)
    int64_t n = 0;
    for (auto& b : drain(l)) {
      ++n;
      for (size_t i = 0; i < b.indices.size(); ++i) {
        EXPECT_TRUE(seen.insert({b.indices[i], b.views[i]}).second);
      }
    }
    EXPECT_EQ(n, steps);
  }
  EXPECT_EQ(seen.size(), 18u);
  // The three crops of a clip differ (left, centre, right), the clips of a video too.
  const auto& rec = ds->records()[0];
  Recipe r = recipe();
  auto crop = [&](int64_t view) { return read_clip(rec, test_clip(r, 20, view)); };
  EXPECT_FALSE(torch::equal(crop(0), crop(1)));
  EXPECT_FALSE(torch::equal(crop(1), crop(2)));
  EXPECT_FALSE(torch::equal(crop(0), crop(3)));
}

// decode.threads = 0 shares the cores among the loader's workers instead of giving every open
// video a thread per core.
TEST(LoaderThreads, DecodeThreadsShareTheCoresAmongWorkers) {
  Recipe r;
  r.decode.threads = 3;
  EXPECT_EQ(decode_threads_for(r), 3);
  const char* outer = std::getenv("HOLO_DECODE_THREADS");
  const std::string saved = outer != nullptr ? outer : "";
  ::unsetenv("HOLO_DECODE_THREADS");
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  r.decode.threads = 0;
  r.loader.workers = 2;
  EXPECT_EQ(decode_threads_for(r), std::max(1, cores / 2));
  r.loader.workers = 0;  // batches built in the training thread: it has every core
  EXPECT_EQ(decode_threads_for(r), cores);
  r.loader.workers = 4 * cores;
  EXPECT_EQ(decode_threads_for(r), 1);
  ::setenv("HOLO_DECODE_THREADS", "5", 1);  // the environment comes before the division
  EXPECT_EQ(decode_threads_for(r), 5);
  r.decode.threads = 2;  // and the recipe before the environment
  EXPECT_EQ(decode_threads_for(r), 2);
  if (outer != nullptr) {
    ::setenv("HOLO_DECODE_THREADS", saved.c_str(), 1);
  } else {
    ::unsetenv("HOLO_DECODE_THREADS");
  }
}

// The crops of a test clip are cut from one decode of its frames; the views are the same as
// views decoded one at a time.
TEST_F(Loader, TestCropsOfAClipShareOneDecode) {
  auto ds = make_dataset(recipe(), "val");
  Recipe r = recipe();
  r.loader.batch_size = 6;  // one record's 2 clips x 3 crops per batch
  r.loader.workers = 1;
  ClipLoader l(ds, r, LoaderMode::kTest, 0, 1);
  int64_t views = 0;
  for (auto& b : drain(l)) {
    for (size_t i = 0; i < b.indices.size(); ++i, ++views) {
      const auto& rec = ds->records()[b.indices[i]];
      auto d = open_decoder(rec.path, DecoderOptions());
      const torch::Tensor alone = read_clip(*d, test_clip(r, sampling_frames(rec, d->info()), b.views[i]));
      EXPECT_TRUE(torch::equal(b.clips[static_cast<int64_t>(i)], alone)) << rec.path << " view " << b.views[i];
    }
  }
  EXPECT_EQ(views, 18);
  EXPECT_EQ(l.clips_decoded(), 6);  // 3 records x 2 clips
  EXPECT_EQ(l.clips_reused(), 12);
}

TEST_F(Loader, ClipsHoldExactlyTheSampledFrames) {
  auto ds = make_dataset(recipe(), "train");
  const auto& rec = ds->records()[0];
  for (int64_t view = 0; view < 4; ++view) {
    ClipRequest c = train_clip(recipe(), 20, 0, 0, view);
    ASSERT_EQ(c.frames.size(), 4u);
    EXPECT_EQ(c.frames[1] - c.frames[0], 2);
    EXPECT_EQ(c.frames, train_clip(recipe(), 20, 0, 0, view).frames);  // pure function
    // Unscaled, uncropped, not normalised: the frame codes are readable.
    c.short_side = 0;
    c.crop_size = 0;
    c.flip = false;
    c.normalize = false;
    const auto x = read_clip(rec, c);  // 3 x T x H x W in [0, 1]
    const auto u8 = x.mul(255).round().to(torch::kUInt8).permute({1, 2, 3, 0}).contiguous();
    for (int64_t t = 0; t < 4; ++t) {
      EXPECT_EQ(read_frame_code(u8[t].data_ptr<uint8_t>(), 64, 48), c.frames[t]);
    }
  }
  // Single frames at given times (2D models): 16 fps, so 0.5 s is frame 8.
  const auto f = read_frames_at(rec, {0.0, 0.5, 0.99}, 0);
  EXPECT_EQ(f.sizes(), (std::vector<int64_t>{3, 48, 64, 3}));
  EXPECT_EQ(read_frame_code(f[1].contiguous().data_ptr<uint8_t>(), 64, 48), 8);
  EXPECT_EQ(read_frame_code(f[2].contiguous().data_ptr<uint8_t>(), 64, 48), 15);
}

// The one-pass transform equals the tensor expression it replaced, bit for bit: crop (by
// fraction, and along the long side for test crops of portrait and landscape frames), flip,
// normalisation or only the division by 255.
TEST(Transform, OnePassEqualsTheTensorExpression) {
  const auto reference = [](const torch::Tensor& frames, const ClipRequest& r) {
    torch::Tensor x = frames;
    const int64_t h = x.size(1), w = x.size(2);
    if (r.crop_size > 0) {
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
    x = x.permute({3, 0, 1, 2}).to(torch::kFloat32).div_(255.0);
    if (r.normalize) {
      const auto mean = torch::tensor(std::vector<float>(r.mean.begin(), r.mean.end())).view({3, 1, 1, 1});
      const auto std = torch::tensor(std::vector<float>(r.std.begin(), r.std.end())).view({3, 1, 1, 1});
      x = x.sub_(mean).div_(std);
    }
    return x.contiguous();
  };
  torch::manual_seed(3);
  int checked = 0;
  for (const auto& size : std::vector<std::pair<int64_t, int64_t>>{{40, 57}, {61, 38}, {33, 33}}) {
    const torch::Tensor frames = torch::randint(0, 256, {5, size.first, size.second, 3}, torch::kUInt8);
    for (const int64_t crop : {0, 32}) {
      for (const bool flip : {false, true}) {
        for (const bool normalize : {false, true}) {
          for (const bool long_side : {false, true}) {
            ClipRequest r;
            r.crop_size = crop;
            r.crop_x = 0.8;
            r.crop_y = 0.3;
            r.crop_along_long_side = long_side;
            r.flip = flip;
            r.normalize = normalize;
            const torch::Tensor got = transform_clip(frames, r);
            const torch::Tensor want = reference(frames, r);
            ASSERT_EQ(got.sizes(), want.sizes());
            ASSERT_TRUE(got.is_contiguous());
            EXPECT_TRUE(torch::equal(got, want)) << size.first << "x" << size.second << " crop " << crop << " flip "
                                                 << flip << " normalize " << normalize << " long side " << long_side;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 48);
  // A view of frames (not contiguous) is read as the frames it shows.
  const torch::Tensor frames = torch::randint(0, 256, {4, 20, 30, 3}, torch::kUInt8);
  const torch::Tensor strided = frames.slice(0, 0, 4, 2);
  EXPECT_TRUE(torch::equal(transform_clip(strided, ClipRequest{}), reference(strided, ClipRequest{})));
  EXPECT_THROW(transform_clip(frames.to(torch::kFloat32), ClipRequest{}), c10::Error);
  // Into a given tensor (a batch's slot): the same values, in that tensor; a slot of another
  // size is refused.
  ClipRequest crop;
  crop.crop_size = 16;
  crop.flip = true;
  torch::Tensor batch = torch::full({2, 3, 4, 16, 16}, -7.0f);
  const torch::Tensor written = transform_clip(frames, crop, batch[1]);
  EXPECT_EQ(written.data_ptr(), batch[1].data_ptr());
  EXPECT_TRUE(torch::equal(batch[1], reference(frames, crop)));
  EXPECT_TRUE(torch::equal(batch[0], torch::full({3, 4, 16, 16}, -7.0f)));
  EXPECT_THROW(transform_clip(frames, ClipRequest{}, batch[0]), c10::Error);
}

// Without the frame code the top band is background in every frame: a frame-level model can
// no longer read the time of a frame (and so the order of the frames) from it.
TEST(Synth, WithoutTheFrameCodeNoFrameCarriesItsIndex) {
  const fs::path dir = holo::testing::temp_dir();
  for (const bool code : {true, false}) {
    const fs::path out = dir / (code ? "coded" : "plain");
    synthesize(SynthOptions().set_out(out.string()).set_videos(2).set_classes(2).set_frames(16).set_size(64, 48)
                   .set_seed(3).set_frame_code(code));
    std::string video;
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      if (e.path().extension() == ".mp4") video = e.path().string();
    }
    ASSERT_FALSE(video.empty()) << "no video in " << out;
    auto d = open_decoder(video, DecoderOptions());
    const auto b = d->decode({5, 10}, 0);
    const int band = frame_code_band(48);
    double diff = 0;
    for (int64_t i = 0; i < int64_t{band} * 64 * 3; ++i) diff += std::abs(int(b.frame(0)[i]) - int(b.frame(1)[i]));
    diff /= band * 64 * 3;
    if (code) {
      EXPECT_EQ(read_frame_code(b.frame(0), 64, 48), 5);
      EXPECT_EQ(read_frame_code(b.frame(1), 64, 48), 10);
      EXPECT_GT(diff, 40);
    } else {
      EXPECT_NE(read_frame_code(b.frame(1), 64, 48), 10);
      EXPECT_LT(diff, 4) << "the top band changes between frames";
    }
  }
}

// A single frame must not reveal a motion class, even with its index drawn on it: at a given
// frame index the shape's position (moving left / right, up / down) and its size (growing /
// shrinking) have the same distribution in both classes of a pair. The same measurements over
// 4 frames do tell the direction, so they see the shapes.
TEST(Synth, AFrameDoesNotRevealTheDirectionOfMotion) {
  const fs::path dir = holo::testing::temp_dir();
  const int w = 96, h = 64, per_class = 48;
  synthesize(SynthOptions()
                 .set_out(dir.string())
                 .set_videos(8 * per_class)
                 .set_classes(8)
                 .set_frames(32)
                 .set_size(w, h)
                 .set_seed(11));
  const int top = frame_code_band(h);
  struct Shape {
    double x, y, area;
    bool edge;
  };
  // The shape: pixels far from their row's median colour (the background, a vertical gradient).
  const auto measure = [&](const uint8_t* f) {
    Shape s{0, 0, 0, false};
    for (int y = top; y < h; ++y) {
      const uint8_t* row = f + static_cast<size_t>(y) * w * 3;
      int med[3];
      for (int c = 0; c < 3; ++c) {
        std::vector<int> v(w);
        for (int x = 0; x < w; ++x) v[x] = row[x * 3 + c];
        std::nth_element(v.begin(), v.begin() + w / 2, v.end());
        med[c] = v[w / 2];
      }
      for (int x = 0; x < w; ++x) {
        double d = 0;
        for (int c = 0; c < 3; ++c) d += std::pow(row[x * 3 + c] - med[c], 2);
        if (d < 60 * 60) continue;
        s.x += x;
        s.y += y;
        s.area += 1;
        s.edge = s.edge || x == 0 || x == w - 1 || y == top || y == h - 1;
      }
    }
    if (s.area > 0) s.x /= s.area, s.y /= s.area;
    return s;
  };
  // Per class: the shape at frames 0 and 31, and its change over frames 0 to 4.
  std::map<std::string, std::vector<std::array<double, 10>>> stats;
  for (const auto& e : fs::recursive_directory_iterator(dir / "videos")) {
    if (e.path().extension() != ".mp4") continue;
    const FrameBuffer b = open_decoder(e.path().string(), DecoderOptions())->decode({0, 4, 31}, 0);
    const Shape a = measure(b.frame(0)), m = measure(b.frame(1)), z = measure(b.frame(2));
    ASSERT_GT(a.area, 10) << e.path();
    // Changes wrap around the picture (translation) and around the range of sizes (scale).
    const auto wrapped = [](double d, double period) {
      return d - period * std::round(d / period);
    };
    stats[e.path().parent_path().filename().string()].push_back(
        {a.x, a.y, a.area, z.x, z.y, z.area, wrapped(m.x - a.x, w), wrapped(m.y - a.y, h - top),
         m.area - a.area, a.edge || m.edge ? 1.0 : 0.0});
  }
  ASSERT_EQ(stats.size(), 8u);
  const auto mean_and_se = [&](const std::string& cls, int k) {
    const auto& v = stats.at(cls);
    double sum = 0, sq = 0;
    for (const auto& r : v) sum += r[k], sq += r[k] * r[k];
    const double n = static_cast<double>(v.size()), mean = sum / n;
    return std::pair<double, double>{mean, std::sqrt(std::max(0.0, sq / n - mean * mean) / n)};
  };
  // z: the difference of the two classes' means in standard errors.
  const auto z_score = [&](const std::string& a, const std::string& b, int k) {
    const auto [ma, sa] = mean_and_se(a, k);
    const auto [mb, sb] = mean_and_se(b, k);
    return (ma - mb) / std::sqrt(sa * sa + sb * sb + 1e-12);
  };
  // The share of a class's videos whose shape moved the way of the first class of its pair
  // (right, down, larger) over frames 0 to 4, among those whose shape does not touch an edge
  // of the picture in those frames (a shape across an edge is drawn on both sides, and its
  // centroid is between them). A size that starts again in those frames counts against its
  // class.
  const auto share_increasing = [&](const std::string& cls, int k) {
    int64_t n = 0, up = 0;
    for (const auto& r : stats.at(cls)) {
      if (r[9] != 0) continue;
      ++n;
      up += r[k] > 0 ? 1 : 0;
    }
    EXPECT_GE(n, per_class / 3) << cls;
    return n > 0 ? static_cast<double>(up) / static_cast<double>(n) : 0.5;
  };
  struct Pair {
    std::string a, b;
    int frame0, frame31, change;
  };
  for (const Pair& p :
       {Pair{"moving_right", "moving_left", 0, 3, 6}, Pair{"moving_down", "moving_up", 1, 4, 7},
        Pair{"growing", "shrinking", 2, 5, 8}}) {
    EXPECT_LT(std::abs(z_score(p.a, p.b, p.frame0)), 4) << p.a << " / " << p.b << " at frame 0";
    EXPECT_LT(std::abs(z_score(p.a, p.b, p.frame31)), 4) << p.a << " / " << p.b << " at frame 31";
    EXPECT_GT(share_increasing(p.a, p.change), 0.75) << p.a << " over frames 0 to 4";
    EXPECT_LT(share_increasing(p.b, p.change), 0.25) << p.b << " over frames 0 to 4";
  }
}

TEST_F(Loader, BadVideosAreQuarantinedAndTheBatchFilledWithTheirOwnLabels) {
  const fs::path dir = holo::testing::temp_dir();
  auto good = make_dataset(recipe(), "train");
  std::vector<VideoRecord> records(good->records().begin(), good->records().begin() + 6);
  holo::testing::write_text_file((dir / "zero.mp4").string(), "");
  holo::testing::write_text_file((dir / "text.mp4").string(), "not a video\n");
  holo::testing::write_wav((dir / "audio.wav").string());
  holo::testing::write_truncated(records[0].path, (dir / "cut.mp4").string(), 0.6);
  // Damaged from 30% of its bytes on: every clip reaches a frame that does not decode.
  holo::testing::write_corrupted(records[0].path, (dir / "corrupt.mp4").string(), 0.3, 1.0);
  const auto dup =
      holo::testing::write_broken_timestamps(records[0].path, (dir / "dup.mkv").string());
  ASSERT_EQ(dup.exit_code, 0) << dup.output;
  holo::testing::write_coded_video((dir / "ok.mp4").string(), 12, VideoWriterOptions().set_size(64, 48));
  for (const auto& name :
       {"zero.mp4", "text.mp4", "audio.wav", "cut.mp4", "corrupt.mp4", "dup.mkv"}) {
    records.push_back({name, (dir / name).string(), 2, {}});
  }
  records.push_back({"gone", (dir / "gone.mp4").string(), 1, {}});  // vanished after indexing
  auto ds = std::make_shared<Dataset>("mixed", records, good->class_names(), std::vector<Category>{},
                                      std::vector<std::string>{(dir / "never.mp4").string()});
  Recipe r = recipe();
  r.data.max_bad_fraction = 0.6;  // 8 of 14 bad
  ClipLoader l(ds, r, LoaderMode::kTrain, 0, 1);
  std::multiset<int64_t> seen;
  for (auto& b : drain(l)) {
    EXPECT_EQ(b.indices.size(), 2u);
    for (size_t i = 0; i < b.indices.size(); ++i) {
      EXPECT_LT(b.indices[i], 6) << "a bad video reached a batch";
      EXPECT_EQ(b.labels[i].item<int64_t>(), ds->records()[b.indices[i]].label);
      seen.insert(b.indices[i]);
    }
  }
  EXPECT_EQ(l.state().quarantined, 7);
  std::map<std::string, std::string> reasons;
  for (const auto& q : l.quarantined()) reasons[fs::path(q.path).filename().string()] = q.reason;
  EXPECT_EQ(reasons["zero.mp4"], "zero-byte file");
  EXPECT_THAT(reasons["text.mp4"], HasSubstr("not a readable container"));
  EXPECT_EQ(reasons["audio.wav"], "audio only (no video stream)");
  // Cut at 60% of its bytes (the first keyframe is most of them): fewer than
  // data.min_readable_fraction of its frames can be read.
  EXPECT_THAT(reasons["cut.mp4"], HasSubstr("truncated: the container lists"));
  EXPECT_THAT(reasons["cut.mp4"], HasSubstr("fewer than data.min_readable_fraction = 0.5"));
  EXPECT_EQ(reasons["gone.mp4"], "missing file");
  EXPECT_THAT(reasons["corrupt.mp4"],
              ::testing::MatchesRegex("frame [0-9]+ of [0-9]+ cannot be decoded"));
  EXPECT_THAT(reasons["dup.mkv"], HasSubstr("broken timestamps: two frames share the timestamp"));
  EXPECT_EQ(seen.size(),
            12u);  // 6 steps of 2 from 6 good videos: replacements are logged, not silent

  // Above the limit the run stops, naming the count and a reason.
  r.data.max_bad_fraction = 0.2;
  ClipLoader strict(ds, r, LoaderMode::kTrain, 0, 1);
  EXPECT_THAT([&] { drain(strict); }, ::testing::ThrowsMessage<Error>(HasSubstr("above data.max_bad_fraction = 0.2")));
  // Missing files alone can exceed it at construction.
  r.data.max_bad_fraction = 0.0;
  EXPECT_THAT([&] { ClipLoader x(ds, r, LoaderMode::kTrain, 0, 1); },
              ::testing::ThrowsMessage<Error>(HasSubstr("first missing: " + (dir / "never.mp4").string())));
}

// Each rank meets the bad videos of its own positions only: data.max_bad_fraction applies to
// the sum over the ranks (the trainer sums epoch_quarantined() at every step), on every rank at
// once, and a rank's own finds alone do not stop it.
TEST_F(Loader, BadFractionIsCheckedOnTheSumOverRanks) {
  const fs::path dir = holo::testing::temp_dir();
  auto good = make_dataset(recipe(), "train");
  ASSERT_GE(good->records().size(), 7u);
  std::vector<VideoRecord> records(good->records().begin(), good->records().begin() + 7);
  holo::testing::write_text_file((dir / "zero.mp4").string(), "");
  holo::testing::write_text_file((dir / "text.mp4").string(), "not a video\n");
  holo::testing::write_wav((dir / "audio.wav").string());
  holo::testing::write_truncated(records[0].path, (dir / "cut.mp4").string(), 0.6);
  for (const auto& name : {"zero.mp4", "text.mp4", "audio.wav", "cut.mp4"}) {
    records.push_back({name, (dir / name).string(), 2, {}});
  }
  records.push_back({"gone", (dir / "gone.mp4").string(), 1, {}});
  // 12 records (5 bad) and one missing at indexing: 6 of 13 bad. 12 positions on 2 ranks of
  // batch 2: 3 steps, no padding.
  auto ds =
      std::make_shared<Dataset>("mixed", records, good->class_names(), std::vector<Category>{},
                                std::vector<std::string>{(dir / "never.mp4").string()});
  Recipe r = recipe();
  r.data.max_bad_fraction = 0.4;  // 5.2 of 13
  ClipLoader a(ds, r, LoaderMode::kTrain, 0, 2), b(ds, r, LoaderMode::kTrain, 1, 2);
  a.defer_bad_fraction_check(true);
  b.defer_bad_fraction_check(true);
  EXPECT_EQ(drain(a).size(), 3u);
  EXPECT_EQ(drain(b).size(), 3u);
  // Every bad record is at exactly one position of the epoch: the sum is exact.
  EXPECT_EQ(a.epoch_quarantined() + b.epoch_quarantined(), 5);
  EXPECT_LT(a.epoch_quarantined(), 5);
  EXPECT_LT(b.epoch_quarantined(), 5);
  const int64_t sum = a.epoch_quarantined() + b.epoch_quarantined();
  for (ClipLoader* l : {&a, &b}) {
    EXPECT_THAT([&] { l->set_world_quarantined(sum); },
                ::testing::ThrowsMessage<Error>(HasSubstr("6 of 13 videos")));
    EXPECT_EQ(l->state().quarantined, 5);  // what a checkpoint saves: the world's count
  }
  a.set_epoch(1);
  EXPECT_EQ(a.epoch_quarantined(), 0);

  // A rank checking its own finds alone (one rank, or no deferral) sees at most 1 + 4 of 13.
  ClipLoader c(ds, r, LoaderMode::kTrain, 0, 2);
  EXPECT_NO_THROW(drain(c));
  // Under the limit the sum passes.
  r.data.max_bad_fraction = 0.5;
  ClipLoader d(ds, r, LoaderMode::kTrain, 0, 2);
  d.defer_bad_fraction_check(true);
  EXPECT_NO_THROW(d.set_world_quarantined(sum));
}

TEST_F(Loader, MultiLabelBatchesCarryTagVectors) {
  const fs::path dir = holo::testing::temp_dir();
  synthesize(SynthOptions().set_kind("hvu").set_out((dir / "hvu").string()).set_videos(6).set_frames(12).set_size(64, 48));
  Recipe r = recipe();
  r.data.dataset = "hvu";
  r.data.root = (dir / "hvu" / "videos").string();
  r.data.train = (dir / "hvu" / "HVU_Train_V1.0.csv").string();
  r.data.categories = (dir / "hvu" / "HVU_Tags_Categories_V1.0.csv").string();
  auto ds = make_dataset(r, "train");
  ASSERT_TRUE(ds->multilabel());
  EXPECT_EQ(ds->categories().size(), 6u);
  ClipLoader l(ds, r, LoaderMode::kTrain, 0, 1);
  auto b = l.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->labels.sizes(), (std::vector<int64_t>{2, static_cast<int64_t>(ds->class_names().size())}));
  for (int64_t i = 0; i < 2; ++i) {
    const auto& tags = ds->records()[b->indices[i]].tags;
    EXPECT_EQ(b->labels[i].sum().item<float>(), static_cast<float>(tags.size()));
    for (int64_t t : tags) EXPECT_EQ(b->labels[i][t].item<float>(), 1.0f);
    // Every video has a tag in each of the six categories.
    for (const auto& c : ds->categories()) {
      bool any = false;
      for (int64_t t : c.tags) any |= std::find(tags.begin(), tags.end(), t) != tags.end();
      EXPECT_TRUE(any) << c.name;
    }
  }
}

}  // namespace
}  // namespace holo::pipeline
