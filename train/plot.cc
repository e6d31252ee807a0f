#include "train/plot.h"

#include <nlohmann/json.hpp>
#if HOLO_HAVE_CAIRO
#include <cairo-svg.h>
#include <cairo.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "core/recipe.h"
#include "core/run_dir.h"

namespace holo {

// ---- Reading metrics.jsonl ---------------------------------------------------------------

std::vector<MetricsRecord> read_metrics_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot read metrics file " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::vector<MetricsRecord> records;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = path + ":" + std::to_string(i + 1);
    if (lines[i].find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(lines[i]);
    } catch (const nlohmann::json::parse_error& e) {
      if (i + 1 == lines.size()) {
        spdlog::warn("{}: skipping a torn last line ({})", where, e.what());
        continue;
      }
      throw IoError(where + ": not a JSON line: " + e.what());
    }
    if (!j.is_object()) throw IoError(where + ": expected a JSON object");
    if (!j.contains("step") || !j["step"].is_number_integer()) {
      throw IoError(where + ": missing integer \"step\"");
    }
    if (!j.contains("split") || !j["split"].is_string()) {
      throw IoError(where + ": missing string \"split\"");
    }
    MetricsRecord r;
    r.step = j["step"].get<int64_t>();
    r.split = j["split"].get<std::string>();
    for (const auto& [key, value] : j.items()) {
      if (key == "step" || key == "split" || !value.is_number()) continue;
      r.values.emplace_back(key, value.get<double>());
    }
    records.push_back(std::move(r));
  }
  return records;
}

// ---- Panels ------------------------------------------------------------------------------

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

/// k of "top<k>" (top1, top5); 0 for any other key.
int64_t top_k(const std::string& key) {
  if (!starts_with(key, "top") || key.size() == 3 || key.size() > 9) return 0;
  for (size_t i = 3; i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9') return 0;
  }
  return std::stoll(key.substr(3));
}

std::string short_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

/// A panel before its series are looked up: which keys it draws and how each is labelled.
struct PanelSpec {
  PanelSpec(std::string title, std::string y_label, double floor, double ceiling)
      : title(std::move(title)), y_label(std::move(y_label)), floor(floor), ceiling(ceiling) {}

  std::string title, y_label;
  double floor, ceiling;  ///< as PlotPanel's y_floor and y_ceiling
  bool lr = false;        ///< log scale when the values span more than a factor 20
  /// (key, what follows the split in the label; empty: the split alone, and the split's colour,
  /// as a panel's main metric: training blue, validation orange in every panel).
  std::vector<std::pair<std::string, std::string>> keys;
  std::string cost;  ///< a per-clip cost: <cost>_mean with a <cost>_min..<cost>_max band
};

/// "GFLOPs" for "gflops", else the name with spaces ("active bins").
std::string cost_name(const std::string& base) {
  if (base == "gflops") return "GFLOPs";
  std::string t = base;
  std::replace(t.begin(), t.end(), '_', ' ');
  return t;
}

std::string cost_title(const std::string& base) { return cost_name(base) + " per clip"; }

}  // namespace

Curves curves_from_metrics(const std::vector<MetricsRecord>& records, int64_t num_classes) {
  // Splits ("train" first) and keys in order of first appearance.
  std::vector<std::string> splits, keys;
  for (const auto& r : records) {
    if (std::find(splits.begin(), splits.end(), r.split) == splits.end()) splits.push_back(r.split);
    for (const auto& kv : r.values) {
      if (std::find(keys.begin(), keys.end(), kv.first) == keys.end()) keys.push_back(kv.first);
    }
  }
  std::stable_partition(splits.begin(), splits.end(),
                        [](const std::string& s) { return s == "train"; });
  // (key, split) -> step -> value; later lines overwrite earlier ones.
  std::map<std::pair<std::string, std::string>, std::map<int64_t, double>> data;
  for (const auto& r : records) {
    for (const auto& kv : r.values) data[{kv.first, r.split}][r.step] = kv.second;
  }
  const auto has = [&](const std::string& k) {
    return std::find(keys.begin(), keys.end(), k) != keys.end();
  };

  Curves out;
  std::set<std::string> placed = {"step", "epoch", "time", "videos"};
  std::vector<PanelSpec> specs;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto add = [&](PanelSpec spec) {
    for (const auto& k : spec.keys) placed.insert(k.first);
    if (!spec.cost.empty()) {
      for (const char* s : {"_mean", "_min", "_max"}) placed.insert(spec.cost + s);
    }
    specs.push_back(std::move(spec));
  };

  PanelSpec loss{"loss", "loss", 0.0, nan};
  if (has("loss")) loss.keys.push_back({"loss", ""});
  add(loss);
  PanelSpec heads{"loss per head", "loss", 0.0, nan};
  for (const auto& k : keys) {
    if (starts_with(k, "loss_")) heads.keys.push_back({k, k.substr(5)});
  }
  add(heads);
  PanelSpec acc{"accuracy", "fraction correct", 0.0, 1.0};
  if (has("acc")) acc.keys.push_back({"acc", ""});
  std::vector<std::pair<int64_t, std::string>> tops;
  for (const auto& k : keys) {
    if (top_k(k) > 0) tops.emplace_back(top_k(k), k);
  }
  std::sort(tops.begin(), tops.end());
  for (const auto& [k, key] : tops) {
    // Every video is right within k guesses when k >= the number of classes.
    if (num_classes > 0 && k >= num_classes) {
      placed.insert(key);
      continue;
    }
    acc.keys.push_back({key, "top-" + std::to_string(k)});
  }
  if (has("mean_class_acc")) acc.keys.push_back({"mean_class_acc", "mean class acc"});
  add(acc);
  PanelSpec map{"mAP", "mAP", 0.0, 1.0};
  if (has("mAP")) map.keys.push_back({"mAP", ""});
  for (const auto& k : keys) {
    if (starts_with(k, "mAP_")) map.keys.push_back({k, k.substr(4)});
  }
  add(map);
  PanelSpec lr{"learning rate", "learning rate", 0.0, nan};
  lr.lr = true;
  if (has("lr")) lr.keys.push_back({"lr", ""});
  add(lr);
  PanelSpec speed{"throughput", has("frames_per_s") && !has("clips_per_s") ? "frames / s" : "clips / s", 0.0, nan};
  if (has("clips_per_s")) speed.keys.push_back({"clips_per_s", ""});
  if (has("frames_per_s")) speed.keys.push_back({"frames_per_s", ""});
  add(speed);
  for (const auto& k : keys) {
    if (!ends_with(k, "_mean")) continue;
    const std::string base = k.substr(0, k.size() - 5);
    if (!has(base + "_min") || !has(base + "_max")) continue;
    PanelSpec cost{cost_title(base), cost_name(base), 0.0, nan};
    cost.cost = base;
    add(cost);
  }
  for (const auto& k : keys) {
    if (placed.count(k)) continue;
    PanelSpec other{k, k, nan, nan};
    other.keys.push_back({k, ""});
    add(other);
  }

  // Series of one key and split: finite points only.
  auto points = [&](const std::string& key, const std::string& split) {
    std::vector<std::pair<double, double>> pts;
    auto it = data.find({key, split});
    if (it == data.end()) return pts;
    for (const auto& [step, value] : it->second) {
      if (std::isfinite(value)) pts.emplace_back(static_cast<double>(step), value);
    }
    return pts;
  };
  auto constant = [](const std::vector<double>& v) {
    return v.size() >= 2 && std::all_of(v.begin(), v.end(), [&](double x) { return x == v[0]; });
  };
  for (const auto& split : splits) {
    const auto videos = points("videos", split);
    std::vector<double> y;
    for (const auto& p : videos) y.push_back(p.second);
    if (!y.empty() && (constant(y) || y.size() == 1))
      out.constants.push_back(split + " videos " + short_number(y[0]));
  }

  for (const auto& spec : specs) {
    PlotPanel p;
    p.title = spec.title;
    p.y_label = spec.y_label;
    p.y_floor = spec.floor;
    p.y_ceiling = spec.ceiling;
    int extra_color = static_cast<int>(splits.size());  // beyond the splits' own colours
    bool varies = false;  // some series has one point, or two that differ
    std::vector<std::string> flat;
    std::vector<std::pair<std::string, std::string>> entries = spec.keys;
    if (!spec.cost.empty()) entries = {{spec.cost + "_mean", ""}};
    for (const auto& [key, suffix] : entries) {
      for (const auto& split : splits) {
        const auto pts = points(key, split);
        if (pts.empty()) continue;
        PlotSeries s;
        s.label = suffix.empty() ? split : split + " " + suffix;
        s.markers = split != "train";
        const bool main = suffix.empty() || key == "top1";
        const int split_index =
            static_cast<int>(std::find(splits.begin(), splits.end(), split) - splits.begin());
        s.color = main ? split_index : extra_color++;
        s.layer = main ? 1 + split_index : 0;
        for (const auto& [x, y] : pts) {
          s.x.push_back(x);
          s.y.push_back(y);
        }
        std::vector<double> lo, hi;
        if (!spec.cost.empty()) {
          // The band at the steps that have all three.
          const auto& mins = data[{spec.cost + "_min", split}];
          const auto& maxes = data[{spec.cost + "_max", split}];
          for (double x : s.x) {
            auto a = mins.find(static_cast<int64_t>(x)), b = maxes.find(static_cast<int64_t>(x));
            lo.push_back(a == mins.end() ? std::numeric_limits<double>::quiet_NaN() : a->second);
            hi.push_back(b == maxes.end() ? std::numeric_limits<double>::quiet_NaN() : b->second);
          }
        }
        const std::string name = split + " " + key;
        const int64_t k = top_k(key);
        const bool all_one = std::all_of(s.y.begin(), s.y.end(), [](double v) { return v == 1.0; });
        if (k > 1 && num_classes <= 0 && all_one) {
          // Right within k guesses at every validation: k is at least the class count.
          out.constants.push_back(name + " 1");
          continue;
        }
        if (!(constant(s.y) && (lo.empty() || (constant(lo) && constant(hi))))) varies = true;
        flat.push_back(name + " " + short_number(s.y[0]));
        s.band_lo = std::move(lo);
        s.band_hi = std::move(hi);
        p.series.push_back(std::move(s));
      }
    }
    // Secondary metrics beside a main one are dashed and drawn over it: where they are equal
    // (top-1 and mean class accuracy of a balanced set), both stay visible.
    const bool has_main = std::any_of(p.series.begin(), p.series.end(),
                                      [](const PlotSeries& s) { return s.layer > 0; });
    for (auto& s : p.series) {
      if (has_main && s.layer == 0) {
        s.dashed = true;
        s.layer = static_cast<int>(splits.size()) + 1;
      }
    }
    // A panel of series that never change says no more than their values do.
    if (!varies) {
      out.constants.insert(out.constants.end(), flat.begin(), flat.end());
      continue;
    }
    if (spec.lr) {
      double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
      for (const auto& s : p.series) {
        for (double v : s.y) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
      p.log_y = lo > 0 && hi / lo > 20.0;
    }
    out.panels.push_back(std::move(p));
  }
  return out;
}

int64_t recorded_num_classes(const std::string& run_dir) {
  const std::string path = (std::filesystem::path(run_dir) / "recipe.toml").string();
  if (!std::filesystem::exists(path)) return 0;
  try {
    const Recipe r = load_recipe(path);
    if (r.task.kind == "multilabel") return 0;
    if (r.data.num_classes > 0) return r.data.num_classes;
    if (r.data.dataset == "synth" && r.data.synth_kind == "motion") return r.data.synth_classes;
  } catch (const Error& e) {
    // A recipe of another version: the curves are still drawn, top-k judged by its values.
    spdlog::debug("plot: the class count of {} is not known: {}", path, e.what());
  }
  return 0;
}

// ---- Axes --------------------------------------------------------------------------------

namespace {

/// 1, 2 or 5 times a power of ten, close to `x`.
double nice_step(double x) {
  const double p = std::pow(10.0, std::floor(std::log10(x)));
  const double f = x / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/// Linear ticks around [min, max], rounded outwards but never past `floor` and `ceiling`.
PlotAxis linear_axis(double min, double max, double floor, double ceiling) {
  if (max <= min) {
    // A single value: a little room either way.
    const double d = min == 0 ? 0.1 : std::fabs(min) * 0.1;
    min -= d;
    max += d;
  }
  if (std::isfinite(floor)) min = std::max(min, floor);
  if (std::isfinite(ceiling)) max = std::min(max, ceiling);
  PlotAxis a;
  const double step = nice_step((max - min) / 5.0);
  const double k0 = std::floor(min / step + 1e-9), k1 = std::ceil(max / step - 1e-9);
  a.lo = k0 * step;
  a.hi = std::max(k1, k0 + 1) * step;
  if (std::isfinite(floor)) a.lo = std::max(a.lo, floor);
  if (std::isfinite(ceiling)) a.hi = std::min(a.hi, ceiling);
  for (double k = k0; k <= std::max(k1, k0 + 1) + 1e-9; k += 1) {
    const double t = k * step;
    if (t >= a.lo - 1e-9 * step && t <= a.hi + 1e-9 * step)
      a.ticks.push_back(std::fabs(t) < 1e-12 * step ? 0.0 : t);
  }
  return a;
}

}  // namespace

PlotAxis y_axis(const PlotPanel& p) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  bool all_positive = true;
  for (const auto& s : p.series) {
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i])) continue;
      for (double v : {s.y[i], i < s.band_lo.size() ? s.band_lo[i] : s.y[i],
                       i < s.band_hi.size() ? s.band_hi[i] : s.y[i]}) {
        if (!std::isfinite(v)) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        all_positive = all_positive && v > 0;
      }
    }
  }
  if (!std::isfinite(lo)) return linear_axis(0, 1, p.y_floor, p.y_ceiling);
  if (p.log_y && all_positive) {
    PlotAxis a;
    a.log = true;
    const double e0 = std::floor(std::log10(lo) + 1e-9),
                 e1 = std::max(std::ceil(std::log10(hi) - 1e-9), e0 + 1);
    a.lo = std::pow(10.0, e0);
    a.hi = std::pow(10.0, e1);
    for (double e = e0; e <= e1 + 1e-9; e += 1) a.ticks.push_back(std::pow(10.0, e));
    return a;
  }
  return linear_axis(lo, hi, p.y_floor, p.y_ceiling);
}

// ---- Drawing -----------------------------------------------------------------------------

#if HOLO_HAVE_CAIRO

namespace {

/// Finite x extent of every series of every panel: panels share the step axis.
std::pair<double, double> x_extent(const std::vector<PlotPanel>& panels) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& p : panels) {
    for (const auto& s : p.series) {
      for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        lo = std::min(lo, s.x[i]);
        hi = std::max(hi, s.x[i]);
      }
    }
  }
  if (!std::isfinite(lo)) return {0.0, 0.0};
  return {lo, hi};
}

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
using SurfacePtr = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using ContextPtr = std::unique_ptr<cairo_t, ContextDeleter>;

void check_cairo(cairo_status_t status, const char* what) {
  if (status != CAIRO_STATUS_SUCCESS) {
    throw Error(std::string("plot: cairo ") + what + ": " + cairo_status_to_string(status));
  }
}

/// An 8-bit sRGB colour, as cairo is given it (c / 255), so that the PNG holds these bytes.
struct Color {
  int r, g, b;
};
constexpr Color kWhite{0xFF, 0xFF, 0xFF};
constexpr Color kText{0x22, 0x22, 0x22};
constexpr Color kMuted{0x66, 0x66, 0x66};
constexpr Color kGrid{0xE6, 0xE6, 0xE6};
constexpr Color kFrame{0x99, 0x99, 0x99};
constexpr Color kPalette[] = {{0x1F, 0x77, 0xB4}, {0xFF, 0x7F, 0x0E}, {0x2C, 0xA0, 0x2C},
                              {0xD6, 0x27, 0x28}, {0x94, 0x67, 0xBD}, {0x8C, 0x56, 0x4B},
                              {0xE3, 0x77, 0xC2}, {0x7F, 0x7F, 0x7F}};
constexpr const char* kFont = "DejaVu Sans";
constexpr double kDash[] = {5.0, 3.0};

Color series_color(const PlotPanel& p, size_t i) {
  const int c = p.series[i].color >= 0 ? p.series[i].color : static_cast<int>(i);
  return kPalette[c % 8];
}

enum class Anchor { kStart, kMiddle, kEnd };

/// Text and lines on one cairo context; coordinates in pixels, y down.
class Painter {
 public:
  explicit Painter(cairo_t* cr) : cr_(cr) {}

  void color(Color c, double alpha = 1.0) {
    cairo_set_source_rgba(cr_, c.r / 255.0, c.g / 255.0, c.b / 255.0, alpha);
  }

  void font(double size, bool bold = false) {
    cairo_select_font_face(cr_, kFont, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, size);
  }

  double text_width(const std::string& s) {
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    return e.x_advance;
  }

  /// Text in the current font with its baseline at y; `vertical` reads bottom to top with the
  /// baseline at x.
  void text(double x, double y, const std::string& s, Anchor anchor, Color c,
            bool vertical = false) {
    const double w = text_width(s);
    const double shift = anchor == Anchor::kStart ? 0 : anchor == Anchor::kMiddle ? -w / 2 : -w;
    cairo_save(cr_);
    cairo_translate(cr_, x, y);
    if (vertical) cairo_rotate(cr_, -M_PI / 2);
    cairo_move_to(cr_, shift, 0);
    color(c);
    cairo_show_text(cr_, s.c_str());
    cairo_restore(cr_);
  }

  /// A crisp 1-pixel line between pixel centres.
  void hairline(double x1, double y1, double x2, double y2, Color c) {
    cairo_set_line_width(cr_, 1.0);
    cairo_move_to(cr_, std::round(x1) + 0.5, std::round(y1) + 0.5);
    cairo_line_to(cr_, std::round(x2) + 0.5, std::round(y2) + 0.5);
    color(c);
    cairo_stroke(cr_);
  }

  cairo_t* cr() { return cr_; }

 private:
  cairo_t* cr_;
};

std::string tick_label(const PlotAxis& a, double v) {
  char buf[32];
  const double m = std::max(std::fabs(a.lo), std::fabs(a.hi));
  if (a.log || m >= 1e6 || (m < 1e-3 && m > 0)) {
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
  }
  const double step = a.ticks.size() >= 2 ? a.ticks[1] - a.ticks[0] : a.hi - a.lo;
  const int decimals =
      step > 0 ? std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 6) : 0;
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

double position(const PlotAxis& a, double v, double from, double to) {
  const double t = a.log
                       ? (std::log10(v) - std::log10(a.lo)) / (std::log10(a.hi) - std::log10(a.lo))
                       : (v - a.lo) / (a.hi - a.lo);
  return from + t * (to - from);
}

// Panel geometry, relative to the panel's corner.
constexpr double kLeft = 72, kRight = 20, kTitleBaseline = 20, kLegendBaseline = 40,
                 kLegendRow = 17;
constexpr double kBottom = 46;

/// Legend entries laid out in rows of at most `width` pixels; returns each entry's (x, row).
std::vector<std::pair<double, int>> legend_layout(Painter& pt, const PlotPanel& p, double width) {
  std::vector<std::pair<double, int>> at;
  double x = 0;
  int row = 0;
  pt.font(11);
  for (const auto& s : p.series) {
    const double w = 24 + pt.text_width(s.label);
    if (x > 0 && x + w > width) {
      x = 0;
      ++row;
    }
    at.emplace_back(x, row);
    x += w + 18;
  }
  return at;
}

void draw_series(Painter& pt, const PlotSeries& s, Color c, const PlotAxis& ax, const PlotAxis& ay,
                 double left, double right, double top, double bottom) {
  cairo_t* cr = pt.cr();
  const auto px = [&](double v) { return position(ax, v, left, right); };
  const auto py = [&](double v) { return position(ay, v, bottom, top); };
  const auto usable = [&](double v) { return std::isfinite(v) && (!ay.log || v > 0); };
  const size_t n = std::min(s.x.size(), s.y.size());
  // The band: the max edge forwards, the min edge back, over points that have both.
  if (s.band_lo.size() == n && s.band_hi.size() == n) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < n; ++i) {
      if (std::isfinite(s.x[i]) && usable(s.band_lo[i]) && usable(s.band_hi[i])) idx.push_back(i);
    }
    if (idx.size() >= 2) {
      cairo_new_path(cr);
      for (size_t i : idx) cairo_line_to(cr, px(s.x[i]), py(s.band_hi[i]));
      for (auto it = idx.rbegin(); it != idx.rend(); ++it)
        cairo_line_to(cr, px(s.x[*it]), py(s.band_lo[*it]));
      cairo_close_path(cr);
      pt.color(c, 0.18);
      cairo_fill(cr);
    }
  }
  std::vector<std::pair<double, double>> pts;
  for (size_t i = 0; i < n; ++i) {
    if (std::isfinite(s.x[i]) && usable(s.y[i])) pts.emplace_back(px(s.x[i]), py(s.y[i]));
  }
  if (pts.size() >= 2) {
    cairo_new_path(cr);
    for (const auto& [x, y] : pts) cairo_line_to(cr, x, y);
    cairo_set_line_width(cr, 1.8);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, s.dashed ? CAIRO_LINE_CAP_BUTT : CAIRO_LINE_CAP_ROUND);
    if (s.dashed) cairo_set_dash(cr, kDash, 2, 0);
    pt.color(c);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
  }
  if (s.markers || pts.size() == 1) {
    for (const auto& [x, y] : pts) {
      cairo_new_path(cr);
      cairo_arc(cr, x, y, 3.0, 0, 2 * M_PI);
      pt.color(c);
      cairo_fill_preserve(cr);
      cairo_set_line_width(cr, 1.0);
      pt.color(kWhite);
      cairo_stroke(cr);
    }
  }
}

int legend_rows(Painter& pt, const PlotPanel& p, double width) {
  const auto at = legend_layout(pt, p, width - kLeft - kRight);
  return at.empty() ? 1 : at.back().second + 1;
}

/// One panel with its corner at (ox, oy); the frame starts below `rows` rows of legend (the most
/// of the panels beside it, so that their frames line up).
void draw_panel(Painter& pt, const PlotPanel& p, const PlotAxis& ax, double ox, double oy, double w,
                double h, int rows) {
  cairo_t* cr = pt.cr();
  const double left = ox + kLeft, right = ox + w - kRight, bottom = oy + h - kBottom;
  const auto legend = legend_layout(pt, p, right - left);
  const double top = oy + kLegendBaseline + kLegendRow * (rows - 1) + 12;
  const PlotAxis ay = y_axis(p);

  pt.font(13, /*bold=*/true);
  pt.text(left, oy + kTitleBaseline, p.title, Anchor::kStart, kText);

  // Legend, above the frame so that it never hides a curve.
  pt.font(11);
  for (size_t i = 0; i < p.series.size(); ++i) {
    const Color c = series_color(p, i);
    const double x = left + legend[i].first,
                 y = oy + kLegendBaseline + kLegendRow * legend[i].second;
    if (!p.series[i].band_lo.empty()) {
      cairo_rectangle(cr, x, y - 9, 18, 8);
      pt.color(c, 0.18);
      cairo_fill(cr);
    }
    cairo_move_to(cr, x, y - 4);
    cairo_line_to(cr, x + 18, y - 4);
    cairo_set_line_width(cr, 1.8);
    if (p.series[i].dashed) cairo_set_dash(cr, kDash, 2, 0);
    pt.color(c);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    if (p.series[i].markers) {
      cairo_arc(cr, x + 9, y - 4, 3.0, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    pt.text(x + 24, y, p.series[i].label, Anchor::kStart, kText);
  }

  // Grid, ticks and their labels.
  pt.font(10.5);
  for (double t : ax.ticks) {
    const double x = position(ax, t, left, right);
    pt.hairline(x, top, x, bottom, kGrid);
    pt.hairline(x, bottom, x, bottom + 4, kFrame);
    pt.text(x, bottom + 17, tick_label(ax, t), Anchor::kMiddle, kMuted);
  }
  for (double t : ay.ticks) {
    const double y = position(ay, t, bottom, top);
    pt.hairline(left, y, right, y, kGrid);
    pt.hairline(left - 4, y, left, y, kFrame);
    pt.text(left - 7, y + 4, tick_label(ay, t), Anchor::kEnd, kMuted);
  }
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, std::round(left) + 0.5, std::round(top) + 0.5,
                  std::round(right) - std::round(left), std::round(bottom) - std::round(top));
  pt.color(kFrame);
  cairo_stroke(cr);
  pt.font(11);
  pt.text((left + right) / 2, bottom + 35, p.x_label, Anchor::kMiddle, kText);
  pt.text(ox + 18, (top + bottom) / 2, p.y_label + (ay.log ? " (log scale)" : ""), Anchor::kMiddle,
          kText,
          /*vertical=*/true);

  // The series, clipped to the frame (with room for a marker on its edge).
  cairo_save(cr);
  cairo_rectangle(cr, left - 4, top - 4, right - left + 8, bottom - top + 8);
  cairo_clip(cr);
  // In layers (PlotSeries::layer): validation over training, dashed secondary metrics on top.
  std::vector<size_t> order(p.series.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return p.series[a].layer < p.series[b].layer; });
  for (size_t i : order)
    draw_series(pt, p.series[i], series_color(p, i), ax, ay, left, right, top, bottom);
  cairo_restore(cr);
}

struct Size {
  int width, height, header;
};

Size figure_size(const std::vector<PlotPanel>& panels, const PlotOptions& o) {
  if (panels.empty()) throw Error("plot: nothing to draw (no panels)");
  const int cols = std::max(1, std::min<int>(o.columns, static_cast<int>(panels.size())));
  const int rows = (static_cast<int>(panels.size()) + cols - 1) / cols;
  const int header = (o.title.empty() ? 0 : 32) + (o.note.empty() ? 0 : 18);
  return {cols * o.panel_width, rows * o.panel_height + header, header};
}

void draw_figure(cairo_t* cr, const std::vector<PlotPanel>& panels, const PlotOptions& o,
                 const Size& size) {
  Painter pt(cr);
  pt.color(kWhite);
  cairo_paint(cr);
  double y = 0;
  if (!o.title.empty()) {
    pt.font(15, /*bold=*/true);
    pt.text(size.width / 2.0, 23, o.title, Anchor::kMiddle, kText);
    y = 32;
  }
  if (!o.note.empty()) {
    pt.font(11);
    pt.text(size.width / 2.0, y + 13, o.note, Anchor::kMiddle, kMuted);
  }
  const int cols = size.width / o.panel_width;
  const auto xr = x_extent(panels);
  const PlotAxis ax =
      linear_axis(xr.first, xr.second, 0.0, std::numeric_limits<double>::quiet_NaN());
  std::vector<int> rows((panels.size() + cols - 1) / cols, 1);
  for (size_t i = 0; i < panels.size(); ++i) {
    rows[i / cols] = std::max(rows[i / cols], legend_rows(pt, panels[i], o.panel_width));
  }
  for (size_t i = 0; i < panels.size(); ++i) {
    const double ox = static_cast<double>(i % cols) * o.panel_width;
    const double oy = size.header + static_cast<double>(i / cols) * o.panel_height;
    draw_panel(pt, panels[i], ax, ox, oy, o.panel_width, o.panel_height, rows[i / cols]);
  }
  check_cairo(cairo_status(cr), "drawing");
}

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

std::string render_svg(const std::vector<PlotPanel>& panels, const PlotOptions& options) {
  const Size size = figure_size(panels, options);
  std::string svg;
  {
    SurfacePtr surface(
        cairo_svg_surface_create_for_stream(append_to_string, &svg, size.width, size.height));
    check_cairo(cairo_surface_status(surface.get()), "SVG surface");
    cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PX);
    ContextPtr cr(cairo_create(surface.get()));
    draw_figure(cr.get(), panels, options, size);
    cr.reset();
    cairo_surface_finish(surface.get());
    check_cairo(cairo_surface_status(surface.get()), "writing SVG");
  }
  return svg;
}

std::string render_png(const std::vector<PlotPanel>& panels, const PlotOptions& options) {
  const Size size = figure_size(panels, options);
  SurfacePtr surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, size.width, size.height));
  check_cairo(cairo_surface_status(surface.get()), "image surface");
  {
    ContextPtr cr(cairo_create(surface.get()));
    draw_figure(cr.get(), panels, options, size);
  }
  std::string png;
  check_cairo(cairo_surface_write_to_png_stream(surface.get(), append_to_string, &png),
              "writing PNG");
  return png;
}

#else  // a build without cairo (train/CMakeLists.txt)

std::string render_svg(const std::vector<PlotPanel>&, const PlotOptions&) {
  throw Error(
      "holo plot: this build has no cairo to draw with; install libcairo2-dev "
      "(scripts/install-deps.sh) and rebuild");
}

std::string render_png(const std::vector<PlotPanel>& panels, const PlotOptions& options) {
  return render_svg(panels, options);
}

#endif

CurveFiles write_curves(const std::string& run_dir) {
  const std::filesystem::path dir(run_dir);
  const std::string metrics = (dir / "metrics.jsonl").string();
  if (!std::filesystem::exists(metrics)) {
    throw IoError("no metrics file in the run directory: " + metrics);
  }
  const auto records = read_metrics_jsonl(metrics);
  const Curves curves = curves_from_metrics(records, recorded_num_classes(run_dir));
  if (curves.panels.empty()) throw IoError(metrics + ": no metric that changes to plot");
  std::string name = dir.filename().string();
  if (name.empty()) name = dir.parent_path().filename().string();
  std::string note;
  for (const auto& c : curves.constants) note += (note.empty() ? "constant: " : ", ") + c;
  const PlotOptions options = PlotOptions().set_title(name).set_note(note);
  CurveFiles files;
  files.svg = (dir / "curves.svg").string();
  files.png = (dir / "curves.png").string();
  files.panels = static_cast<int64_t>(curves.panels.size());
  files.records = static_cast<int64_t>(records.size());
  files.constants = curves.constants;
  write_file_atomic(files.svg, render_svg(curves.panels, options));
  write_file_atomic(files.png, render_png(curves.panels, options));
  return files;
}

}  // namespace holo
