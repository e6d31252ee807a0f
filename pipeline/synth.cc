#include "pipeline/synth.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.h"
#include "pipeline/random.h"
#include "pipeline/video_writer.h"

namespace fs = std::filesystem;

namespace holo::pipeline {
namespace {

constexpr double kPi = 3.14159265358979323846;

struct Rgb {
  uint8_t r, g, b;
};

struct NamedColour {
  const char* name;
  Rgb rgb;
};
const NamedColour kShapeColours[] = {
    {"red", {215, 40, 40}}, {"green", {40, 175, 60}}, {"blue", {45, 80, 215}}, {"yellow", {230, 205, 40}}};
const NamedColour kScenes[] = {
    {"beach", {205, 185, 135}}, {"forest", {35, 95, 45}}, {"night_sky", {20, 22, 45}}, {"snowfield", {225, 228, 236}}};
const char* const kShapes[] = {"circle", "square", "triangle", "pentagon"};
const int kShapeSides[] = {24, 4, 3, 5};

/// Motion of a shape over the video; `direction` is +1 or -1.
enum class Motion { kHorizontal, kVertical, kRotate, kScale, kStill };

struct ShapeTrack {
  int kind = 0;  // index into kShapes
  Rgb colour{};
  Motion motion = Motion::kStill;
  int direction = 1;
  double cx = 0, cy = 0, radius = 8, angle = 0;  // at frame 0
  double speed = 0;        // pixels per frame along a wrapped path (translation)
  double spin = 0;         // radians per frame (rotation)
  double growth = 0;       // range of the radius (scale): radius + [0, growth)
  double growth_rate = 0;  // radius change per frame (scale)
  double phase = 0;        // scale: the radius at frame 0 is radius + phase
  bool fast = false;
};

/// `v` wrapped into [lo, lo + extent).
double wrap(double v, double lo, double extent) {
  double u = std::fmod(v - lo, extent);
  if (u < 0) u += extent;
  return lo + u;
}

/// State of a track at frame t. Translation wraps around the picture (a shape that leaves on
/// one side comes back on the other) and scaling wraps around its range of radii (a growing
/// shape starts small again), so that at every frame index the position and the size are
/// uniform over the same range for both directions: a frame does not tell the direction, even
/// with its index drawn on it.
void track_at(const ShapeTrack& s, int64_t t, int width, int top, int height, double* cx,
              double* cy, double* r, double* a) {
  const double tt = static_cast<double>(t);
  *cx = s.cx;
  *cy = s.cy;
  *r = s.radius;
  *a = s.angle;
  switch (s.motion) {
    case Motion::kHorizontal:
      *cx = wrap(s.cx + s.direction * s.speed * tt, 0, width);
      break;
    case Motion::kVertical:
      *cy = wrap(s.cy + s.direction * s.speed * tt, top, height - top);
      break;
    case Motion::kRotate:
      *a += s.direction * s.spin * tt;
      break;
    case Motion::kScale:
      *r += wrap(s.phase + s.direction * s.growth_rate * tt, 0, s.growth);
      break;
    case Motion::kStill: break;
  }
}

void fill_background(std::vector<uint8_t>& img, int w, int h, Rgb base) {
  for (int y = 0; y < h; ++y) {
    const double shade = 1.0 + 0.25 * (static_cast<double>(y) / h - 0.5);  // a soft vertical gradient
    const uint8_t r = static_cast<uint8_t>(std::clamp(base.r * shade, 0.0, 255.0));
    const uint8_t g = static_cast<uint8_t>(std::clamp(base.g * shade, 0.0, 255.0));
    const uint8_t b = static_cast<uint8_t>(std::clamp(base.b * shade, 0.0, 255.0));
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = r;
      p[1] = g;
      p[2] = b;
    }
  }
}

/// A filled regular polygon with a marker dot near one vertex (so rotation is visible).
void draw_shape(std::vector<uint8_t>& img, int w, int h, int top, int sides, Rgb colour, double cx,
                double cy, double r, double a) {
  std::vector<double> vx(sides), vy(sides);
  for (int k = 0; k < sides; ++k) {
    vx[k] = cx + r * std::cos(a + 2 * kPi * k / sides);
    vy[k] = cy + r * std::sin(a + 2 * kPi * k / sides);
  }
  const double mx = cx + 0.6 * r * std::cos(a), my = cy + 0.6 * r * std::sin(a);
  const double mr = std::max(1.6, r / 4);
  const int lum = (colour.r + colour.g + colour.b) / 3;
  const Rgb marker = lum > 110 ? Rgb{20, 20, 20} : Rgb{245, 245, 245};
  const int x0 = std::max(0, static_cast<int>(cx - r - 1)), x1 = std::min(w - 1, static_cast<int>(cx + r + 1));
  const int y0 = std::max(top, static_cast<int>(cy - r - 1)), y1 = std::min(h - 1, static_cast<int>(cy + r + 1));
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      const double px = x + 0.5, py = y + 0.5;
      bool inside = true;
      for (int k = 0; k < sides && inside; ++k) {
        const int j = (k + 1) % sides;
        inside = (vx[j] - vx[k]) * (py - vy[k]) - (vy[j] - vy[k]) * (px - vx[k]) >= 0;
      }
      if (!inside) continue;
      const bool on_marker = (px - mx) * (px - mx) + (py - my) * (py - my) <= mr * mr;
      const Rgb c = on_marker ? marker : colour;
      uint8_t* p = &img[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = c.r;
      p[1] = c.g;
      p[2] = c.b;
    }
  }
}

Rgb jitter(Rng& rng, Rgb c, int amount) {
  auto j = [&](uint8_t v) {
    return static_cast<uint8_t>(std::clamp<int64_t>(v + rng.uniform_int(2 * amount + 1) - amount, 0, 255));
  };
  return {j(c.r), j(c.g), j(c.b)};
}

/// A background far from the shape colour (so the shape is always visible).
Rgb random_background(Rng& rng, Rgb shape) {
  for (int attempt = 0;; ++attempt) {
    Rgb c{static_cast<uint8_t>(rng.uniform_int(256)), static_cast<uint8_t>(rng.uniform_int(256)),
          static_cast<uint8_t>(rng.uniform_int(256))};
    const double d = std::sqrt(std::pow(c.r - shape.r, 2) + std::pow(c.g - shape.g, 2) + std::pow(c.b - shape.b, 2));
    if (d > 120 || attempt > 64) return c;
  }
}

/// A shape whose motion is `motion` in `direction`, placed so that it stays in view, with the
/// same distribution of appearance for both directions.
ShapeTrack make_track(Rng& rng, const SynthOptions& o, Motion motion, int direction) {
  ShapeTrack s;
  const int top = frame_code_band(o.height);
  const double area_h = o.height - top;
  s.kind = static_cast<int>(rng.uniform_int(4));
  s.colour = jitter(rng, kShapeColours[rng.uniform_int(4)].rgb, 18);
  s.motion = motion;
  s.direction = direction;
  const double rmin = std::max(4.0, area_h * 0.10), rmax = std::max(rmin + 2, area_h * 0.22);
  s.radius = rng.uniform(rmin, rmax);
  s.angle = rng.uniform(0, 2 * kPi);
  s.fast = rng.uniform(0, 1) < 0.5;
  const double speed = s.fast ? rng.uniform(1.0, 1.6) : rng.uniform(0.45, 0.8);  // pixels per frame
  const double n = static_cast<double>(std::max<int64_t>(1, o.frames - 1));
  bool wraps_x = false, wraps_y = false;
  switch (motion) {
    case Motion::kHorizontal:
      s.speed = speed;
      wraps_x = true;
      break;
    case Motion::kVertical:
      s.speed = speed;
      wraps_y = true;
      break;
    case Motion::kRotate:
      s.spin = (s.fast ? rng.uniform(0.10, 0.16) : rng.uniform(0.05, 0.08));
      break;
    case Motion::kScale: {
      // One sweep of the range per video, from a random point of it.
      const double middle = rng.uniform(rmin, rmax);
      s.growth = std::max(2.0, std::min(s.fast ? 0.8 * middle : 0.5 * middle, rmax - 2));
      s.radius = std::max(3.0, middle - s.growth / 2);
      s.growth_rate = s.growth / n;
      s.phase = rng.uniform(0, s.growth);
      break;
    }
    case Motion::kStill: break;
  }
  // Along a wrapped axis any start is in view (the shape is drawn again across the edge);
  // across it, and for the other motions, the whole shape stays inside.
  const double rr = s.radius + s.growth;
  const double lo_x = rr + 1, hi_x = o.width - rr - 1;
  const double lo_y = top + rr + 1, hi_y = o.height - rr - 1;
  s.cx = wraps_x ? rng.uniform(0, o.width) : hi_x > lo_x ? rng.uniform(lo_x, hi_x) : o.width / 2.0;
  s.cy = wraps_y       ? rng.uniform(top, o.height)
         : hi_y > lo_y ? rng.uniform(lo_y, hi_y)
                       : (top + o.height) / 2.0;
  return s;
}

/// The motion classes: (motion, direction) in the order of motion_class_names().
const std::pair<Motion, int> kMotionClasses[] = {
    {Motion::kHorizontal, -1}, {Motion::kHorizontal, +1}, {Motion::kRotate, +1}, {Motion::kRotate, -1},
    {Motion::kScale, +1},      {Motion::kScale, -1},      {Motion::kVertical, -1}, {Motion::kVertical, +1}};

/// Every frame of one video, packed RGB.
std::vector<std::vector<uint8_t>> render_frames(const SynthOptions& o, const std::vector<ShapeTrack>& tracks,
                                                Rgb background) {
  std::vector<std::vector<uint8_t>> frames(o.frames);
  const int top = frame_code_band(o.height);
  for (int64_t t = 0; t < o.frames; ++t) {
    auto& img = frames[t];
    img.resize(static_cast<size_t>(o.width) * o.height * 3);
    fill_background(img, o.width, o.height, background);
    for (const auto& s : tracks) {
      double cx, cy, r, a;
      track_at(s, t, o.width, top, o.height, &cx, &cy, &r, &a);
      draw_shape(img, o.width, o.height, top, kShapeSides[s.kind], s.colour, cx, cy, r, a);
      // A shape across an edge of its wrapped path is drawn again on the other side.
      if (s.motion == Motion::kHorizontal) {
        if (cx + r > o.width)
          draw_shape(img, o.width, o.height, top, kShapeSides[s.kind], s.colour, cx - o.width, cy,
                     r, a);
        if (cx - r < 0)
          draw_shape(img, o.width, o.height, top, kShapeSides[s.kind], s.colour, cx + o.width, cy,
                     r, a);
      } else if (s.motion == Motion::kVertical) {
        const double h = o.height - top;
        if (cy + r > o.height)
          draw_shape(img, o.width, o.height, top, kShapeSides[s.kind], s.colour, cx, cy - h, r, a);
        if (cy - r < top)
          draw_shape(img, o.width, o.height, top, kShapeSides[s.kind], s.colour, cx, cy + h, r, a);
      }
    }
    if (o.frame_code) draw_frame_code(img.data(), o.width, o.height, t);
  }
  return frames;
}

std::string youtube_like_id(Rng& rng) {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string id(11, 'x');
  for (auto& c : id) c = kChars[rng.uniform_int(64)];
  // Leading '-' makes awkward file names for command-line tools.
  if (id[0] == '-') id[0] = 'x';
  return id;
}

std::string clip_name(const std::string& id, int64_t start, int64_t end) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "_%06lld_%06lld.mp4", static_cast<long long>(start), static_cast<long long>(end));
  return id + buf;
}

struct Planned {
  std::string path;
  std::string id;
  int64_t start = 0, end = 0;
  std::string label;               // motion
  std::vector<std::string> tags;   // hvu
  bool val = false;
  std::vector<ShapeTrack> tracks;
  Rgb background{};
};

/// Runs `fn(i)` for i in [0, n) on `threads` threads; rethrows the first exception.
template <class Fn>
void parallel_for(int64_t n, int threads, Fn fn) {
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex mutex;
  auto work = [&] {
    for (int64_t i = next++; i < n; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

void write_text(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".part";
  {
    std::ofstream f(tmp);
    if (!f) throw IoError("cannot write " + tmp.string());
    f << text;
    if (!f) throw IoError("cannot write " + tmp.string());
  }
  fs::rename(tmp, path);
}

}  // namespace

const std::vector<std::string>& motion_class_names() {
  static const std::vector<std::string> names = {"moving_left",  "moving_right", "rotating_clockwise",
                                                 "rotating_counterclockwise", "growing", "shrinking",
                                                 "moving_up",    "moving_down"};
  return names;
}

SynthSummary synthesize(const SynthOptions& o) {
  if (o.kind != "motion" && o.kind != "hvu" && o.kind != "unlabeled") {
    throw UsageError("synthetic kind must be motion, hvu or unlabeled, not '" + o.kind + "'");
  }
  if (o.out.empty()) throw UsageError("synthetic data needs an output folder");
  if (o.videos < 1) throw UsageError("synthetic data needs at least one video");
  if (o.frames < 2 || o.frames >= (int64_t{1} << kFrameCodeBits)) {
    throw UsageError("synthetic videos need 2 to " + std::to_string((1 << kFrameCodeBits) - 1) + " frames");
  }
  if (o.width < 32 || o.height < 32 || o.width % 2 || o.height % 2) {
    throw UsageError("synthetic video size must be even and at least 32x32");
  }
  if (o.kind == "motion" && (o.classes < 2 || o.classes > static_cast<int64_t>(motion_class_names().size()))) {
    throw UsageError("motion data has 2 to " + std::to_string(motion_class_names().size()) + " classes, not " +
                     std::to_string(o.classes));
  }
  const fs::path out = fs::absolute(o.out);
  std::error_code ec;
  fs::create_directories(out / "videos", ec);
  if (ec) throw IoError("cannot create " + (out / "videos").string() + ": " + ec.message());

  // Plan every video first (sequential draws from the seed), then render in parallel.
  std::vector<Planned> plan(o.videos);
  const int64_t seconds = static_cast<int64_t>(std::ceil(o.frames / o.fps));
  std::set<std::string> used_ids;
  for (int64_t i = 0; i < o.videos; ++i) {
    Rng rng(mix_seed(o.seed, static_cast<uint64_t>(i), 0x5e17));
    Planned& p = plan[i];
    do {
      p.id = youtube_like_id(rng);
    } while (!used_ids.insert(p.id).second);
    p.start = rng.uniform_int(300);
    p.end = p.start + seconds;
    const int64_t j = i / std::max<int64_t>(1, o.kind == "motion" ? o.classes : 1);
    p.val = std::ceil((j + 1) * o.val_fraction) > std::ceil(j * o.val_fraction);  // j = 0, 4, 8, ... for 1/4
    if (o.kind == "motion") {
      const int64_t c = i % o.classes;
      p.label = motion_class_names()[c];
      p.tracks.push_back(make_track(rng, o, kMotionClasses[c].first, kMotionClasses[c].second));
      p.background = jitter(rng, random_background(rng, p.tracks[0].colour), 0);
      p.path = (out / "videos" / p.label / clip_name(p.id, p.start, p.end)).string();
    } else if (o.kind == "unlabeled") {
      const auto& [motion, dir] = kMotionClasses[rng.uniform_int(8)];
      p.tracks.push_back(make_track(rng, o, motion, dir));
      p.background = random_background(rng, p.tracks[0].colour);
      p.path = (out / "videos" / (p.id + ".mp4")).string();
    } else {
      const int64_t scene = rng.uniform_int(4);
      p.background = jitter(rng, kScenes[scene].rgb, 12);
      const int64_t c = rng.uniform_int(6);  // main motion: the first six motion classes
      const int64_t count = 1 + rng.uniform_int(3);
      std::set<std::string> tags = {kScenes[scene].name};
      for (int64_t k = 0; k < count; ++k) {
        const auto& [motion, dir] = kMotionClasses[c];
        ShapeTrack s = make_track(rng, o, k == 0 ? motion : Motion::kStill, k == 0 ? dir : 1);
        const int64_t colour = rng.uniform_int(4);
        s.colour = jitter(rng, kShapeColours[colour].rgb, 15);
        tags.insert(kShapes[s.kind]);
        tags.insert(s.kind == 0 ? "round" : "straight_edges");
        if (k == 0) {
          tags.insert(c < 2 ? motion_class_names()[c] : (c < 4 ? "rotating" : motion_class_names()[c]));
          tags.insert(kShapeColours[colour].name);
          tags.insert(colour == 0 || colour == 3 ? "warm_colours" : "cool_colours");
          tags.insert(s.fast ? "fast" : "slow");
          if (c < 2) tags.insert("horizontal_motion");
        }
        p.tracks.push_back(s);
      }
      tags.insert(count == 1 ? "solo" : "gathering");
      p.tags.assign(tags.begin(), tags.end());
      p.path = (out / "videos" / clip_name(p.id, p.start, p.end)).string();
    }
  }

  // Videos are drawn and encoded in parallel, each by one thread. The bytes do not depend on the
  // threads: libx264 runs its C code (pipeline/video_writer.cc: its SIMD code made the files
  // depend on the process's heap), and each video is one encoder's alone.
  SynthSummary summary;
  summary.codec = resolve_encoder(o.codec);
  const int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  for (const auto& p : plan) fs::create_directories(fs::path(p.path).parent_path());
  parallel_for(o.videos, threads, [&](int64_t i) {
    const auto frames = render_frames(o, plan[i].tracks, plan[i].background);
    VideoWriter writer(plan[i].path, VideoWriterOptions().set_size(o.width, o.height).set_fps(o.fps).set_codec(o.codec)
                                         .set_gop(o.gop).set_bframes(o.bframes));
    for (const auto& frame : frames) writer.write(frame.data());
    writer.close();
  });
  summary.videos = o.videos;
  for (const auto& p : plan) summary.files.push_back(p.path);

  if (o.kind == "motion") {
    std::string train = "label,youtube_id,time_start,time_end,split\n";
    std::string val = train;
    std::string test = "youtube_id,time_start,time_end,split\n";
    for (const auto& p : plan) {
      const std::string row = p.id + "," + std::to_string(p.start) + "," + std::to_string(p.end);
      (p.val ? val : train) += p.label + "," + row + (p.val ? ",val\n" : ",train\n");
      if (p.val) test += row + ",test\n";
    }
    write_text(out / "train.csv", train);
    write_text(out / "val.csv", val);
    write_text(out / "test.csv", test);
    write_text(out / "classes.txt", [&] {
      std::string s;
      for (int64_t c = 0; c < o.classes; ++c) s += motion_class_names()[c] + "\n";
      return s;
    }());
    write_text(out / "dataset.toml",
               "# Written by holo data synth --kind motion; use as a base recipe.\n[data]\n"
               "dataset = \"kinetics\"\nroot = \"videos\"\ntrain = \"train.csv\"\nval = \"val.csv\"\n"
               "test = \"test.csv\"\nlayout = \"auto\"\n");
    summary.annotations = {(out / "train.csv").string(), (out / "val.csv").string(), (out / "test.csv").string(),
                           (out / "classes.txt").string(), (out / "dataset.toml").string()};
  } else if (o.kind == "hvu") {
    std::string train = "Tags,youtube_id,time_start,time_end\n";
    std::string val = train;
    for (const auto& p : plan) {
      std::string tags;
      for (const auto& t : p.tags) tags += (tags.empty() ? "" : "|") + t;
      (p.val ? val : train) += tags + "," + p.id + "," + std::to_string(p.start) + "," + std::to_string(p.end) + "\n";
    }
    const std::vector<std::pair<std::string, std::vector<std::string>>> vocabulary = {
        {"action", {"moving_left", "moving_right", "rotating", "growing", "shrinking"}},
        {"attribute", {"red", "green", "blue", "yellow", "fast", "slow"}},
        {"concept", {"round", "straight_edges", "warm_colours", "cool_colours", "horizontal_motion"}},
        {"event", {"solo", "gathering"}},
        {"object", {"circle", "square", "triangle", "pentagon"}},
        {"scene", {"beach", "forest", "night_sky", "snowfield"}}};
    std::string categories = "Tag,Category\n";
    for (const auto& [category, tags] : vocabulary) {
      for (const auto& t : tags) categories += t + "," + category + "\n";
    }
    write_text(out / "HVU_Train_V1.0.csv", train);
    write_text(out / "HVU_Val_V1.0.csv", val);
    write_text(out / "HVU_Tags_Categories_V1.0.csv", categories);
    write_text(out / "dataset.toml",
               "# Written by holo data synth --kind hvu; use as a base recipe.\n[data]\n"
               "dataset = \"hvu\"\nroot = \"videos\"\ntrain = \"HVU_Train_V1.0.csv\"\nval = \"HVU_Val_V1.0.csv\"\n"
               "categories = \"HVU_Tags_Categories_V1.0.csv\"\nlayout = \"flat\"\n");
    summary.annotations = {(out / "HVU_Train_V1.0.csv").string(), (out / "HVU_Val_V1.0.csv").string(),
                           (out / "HVU_Tags_Categories_V1.0.csv").string(), (out / "dataset.toml").string()};
  } else {
    write_text(out / "dataset.toml",
               "# Written by holo data synth --kind unlabeled; use as a base recipe.\n[data]\n"
               "dataset = \"folder\"\nroot = \"videos\"\n");
    summary.annotations = {(out / "dataset.toml").string()};
  }
  return summary;
}

}  // namespace holo::pipeline
