#include "train/plot.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/log.h"
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

std::vector<PlotPanel> curves_from_metrics(const std::vector<MetricsRecord>& records) {
  // Keys in order of first appearance; loss and lr first.
  std::vector<std::string> keys = {"loss", "lr"};
  std::vector<std::string> splits;
  for (const auto& r : records) {
    if (std::find(splits.begin(), splits.end(), r.split) == splits.end()) splits.push_back(r.split);
    for (const auto& kv : r.values) {
      if (kv.first == "epoch" || kv.first == "time") continue;
      if (std::find(keys.begin(), keys.end(), kv.first) == keys.end()) keys.push_back(kv.first);
    }
  }
  // (key, split) -> step -> value; later lines overwrite earlier ones.
  std::map<std::pair<std::string, std::string>, std::map<int64_t, double>> data;
  for (const auto& r : records) {
    for (const auto& kv : r.values) data[{kv.first, r.split}][r.step] = kv.second;
  }
  std::vector<PlotPanel> panels;
  for (const auto& key : keys) {
    PlotPanel p;
    p.title = key == "lr" ? "learning rate" : key;
    p.y_label = key;
    double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
    for (const auto& split : splits) {
      auto it = data.find({key, split});
      if (it == data.end()) continue;
      PlotSeries s;
      s.label = split;
      for (const auto& [step, value] : it->second) {
        if (!std::isfinite(value)) continue;
        s.x.push_back(static_cast<double>(step));
        s.y.push_back(value);
        lo = std::min(lo, value);
        hi = std::max(hi, value);
      }
      if (!s.x.empty()) p.series.push_back(std::move(s));
    }
    if (p.series.empty()) continue;
    p.log_y = key == "lr" && lo > 0 && hi / lo > 20.0;
    panels.push_back(std::move(p));
  }
  return panels;
}

// ---- Drawing -----------------------------------------------------------------------------

namespace {

struct Color {
  uint8_t r, g, b;
};
constexpr Color kBlack{0x22, 0x22, 0x22};
constexpr Color kGrid{0xE3, 0xE3, 0xE3};
constexpr Color kFrame{0x88, 0x88, 0x88};
constexpr Color kWhite{0xFF, 0xFF, 0xFF};
constexpr Color kPalette[] = {{0x1F, 0x77, 0xB4}, {0xFF, 0x7F, 0x0E}, {0x2C, 0xA0, 0x2C},
                              {0xD6, 0x27, 0x28}, {0x94, 0x67, 0xBD}, {0x8C, 0x56, 0x4B},
                              {0xE3, 0x77, 0xC2}, {0x7F, 0x7F, 0x7F}};

std::string hex(Color c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

enum class Anchor { kStart, kMiddle, kEnd };

/// What both back ends draw with; coordinates in pixels, y down.
class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void line(double x1, double y1, double x2, double y2, Color c, double width) = 0;
  virtual void polyline(const std::vector<std::pair<double, double>>& points, Color c,
                        double width) = 0;
  virtual void fill_rect(double x, double y, double w, double h, Color c) = 0;
  /// Text with its baseline at y; `vertical` runs bottom to top with the baseline at x.
  virtual void text(double x, double y, const std::string& s, Anchor anchor, double size,
                    Color c, bool vertical = false) = 0;
  /// Approximate width of `s` at `size`, for the legend box.
  virtual double text_width(const std::string& s, double size) const = 0;

  void stroke_rect(double x, double y, double w, double h, Color c) {
    line(x, y, x + w, y, c, 1);
    line(x + w, y, x + w, y + h, c, 1);
    line(x + w, y + h, x, y + h, c, 1);
    line(x, y + h, x, y, c, 1);
  }
};

// ---- SVG

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

class SvgCanvas : public Canvas {
 public:
  void line(double x1, double y1, double x2, double y2, Color c, double width) override {
    out_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
            num(y2) + "\" stroke=\"" + hex(c) + "\" stroke-width=\"" + num(width) + "\"/>\n";
  }
  void polyline(const std::vector<std::pair<double, double>>& points, Color c,
                double width) override {
    out_ += "<polyline fill=\"none\" stroke=\"" + hex(c) + "\" stroke-width=\"" + num(width) +
            "\" stroke-linejoin=\"round\" points=\"";
    for (size_t i = 0; i < points.size(); ++i) {
      out_ += (i ? " " : "") + num(points[i].first) + "," + num(points[i].second);
    }
    out_ += "\"/>\n";
  }
  void fill_rect(double x, double y, double w, double h, Color c) override {
    out_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(w) +
            "\" height=\"" + num(h) + "\" fill=\"" + hex(c) + "\"/>\n";
  }
  void text(double x, double y, const std::string& s, Anchor anchor, double size, Color c,
            bool vertical) override {
    const char* a = anchor == Anchor::kStart ? "start" : anchor == Anchor::kMiddle ? "middle" : "end";
    out_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(size) +
            "\" text-anchor=\"" + a + "\" fill=\"" + hex(c) + "\"";
    if (vertical) out_ += " transform=\"rotate(-90 " + num(x) + " " + num(y) + ")\"";
    out_ += ">" + xml_escape(s) + "</text>\n";
  }
  double text_width(const std::string& s, double size) const override {
    return 0.6 * size * static_cast<double>(s.size());
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

// ---- Raster

/// The built-in 5x7 pixel font (each row: 5 bits, most significant = leftmost pixel).
// Characters, in this order:  !%'()*+,-./0123456789:<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_|
constexpr char kGlyphChars[] = " !%'()*+,-./0123456789:<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_|";
constexpr uint8_t kGlyphRows[][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  //  
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04},  // !
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},  // %
    {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00},  // '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},  // (
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},  // )
    {0x00, 0x15, 0x0E, 0x1F, 0x0E, 0x15, 0x00},  // *
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00},  // +
    {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08},  // ,
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00},  // -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C},  // .
    {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10},  // /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E},  // 0
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},  // 1
    {0x0E, 0x11, 0x01, 0x06, 0x08, 0x10, 0x1F},  // 2
    {0x1E, 0x01, 0x01, 0x0E, 0x01, 0x01, 0x1E},  // 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02},  // 4
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},  // 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E},  // 6
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},  // 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E},  // 8
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},  // 9
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00},  // :
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02},  // <
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00},  // =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08},  // >
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04},  // ?
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},  // A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},  // B
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},  // C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},  // D
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},  // E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},  // F
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},  // G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},  // H
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // J
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},  // K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},  // L
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},  // M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},  // N
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},  // P
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},  // Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},  // R
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},  // S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},  // T
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},  // V
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},  // W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},  // X
    {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04},  // Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},  // Z
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E},  // [
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E},  // ]
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},  // _
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},  // |
};


const uint8_t* glyph(char ch) {
  if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  const char* p = std::strchr(kGlyphChars, ch);
  if (ch == '\0' || p == nullptr) p = std::strchr(kGlyphChars, '?');
  return kGlyphRows[p - kGlyphChars];
}

class RasterCanvas : public Canvas {
 public:
  RasterCanvas(int width, int height) {
    image_.width = width;
    image_.height = height;
    image_.pixels.assign(static_cast<size_t>(width) * height * 3, 0xFF);
  }

  void line(double x1, double y1, double x2, double y2, Color c, double width) override {
    // Coverage from the distance of each pixel centre to the segment: anti-aliased, any width.
    const double r = width / 2.0;
    const int xa = static_cast<int>(std::floor(std::min(x1, x2) - r - 1));
    const int xb = static_cast<int>(std::ceil(std::max(x1, x2) + r + 1));
    const int ya = static_cast<int>(std::floor(std::min(y1, y2) - r - 1));
    const int yb = static_cast<int>(std::ceil(std::max(y1, y2) + r + 1));
    const double dx = x2 - x1, dy = y2 - y1, len2 = dx * dx + dy * dy;
    for (int py = std::max(0, ya); py <= std::min(image_.height - 1, yb); ++py) {
      for (int px = std::max(0, xa); px <= std::min(image_.width - 1, xb); ++px) {
        const double cx = px + 0.5, cy = py + 0.5;
        double t = len2 > 0 ? ((cx - x1) * dx + (cy - y1) * dy) / len2 : 0.0;
        t = std::clamp(t, 0.0, 1.0);
        const double ex = x1 + t * dx - cx, ey = y1 + t * dy - cy;
        const double coverage = std::clamp(r + 0.5 - std::sqrt(ex * ex + ey * ey), 0.0, 1.0);
        if (coverage > 0) blend(px, py, c, coverage);
      }
    }
  }
  void polyline(const std::vector<std::pair<double, double>>& points, Color c,
                double width) override {
    for (size_t i = 1; i < points.size(); ++i) {
      line(points[i - 1].first, points[i - 1].second, points[i].first, points[i].second, c, width);
    }
    if (points.size() == 1) fill_rect(points[0].first - 2, points[0].second - 2, 4, 4, c);
  }
  void fill_rect(double x, double y, double w, double h, Color c) override {
    const int x0 = std::max(0, static_cast<int>(std::lround(x)));
    const int y0 = std::max(0, static_cast<int>(std::lround(y)));
    const int x1 = std::min(image_.width, static_cast<int>(std::lround(x + w)));
    const int y1 = std::min(image_.height, static_cast<int>(std::lround(y + h)));
    for (int py = y0; py < y1; ++py) {
      for (int px = x0; px < x1; ++px) blend(px, py, c, 1.0);
    }
  }
  void text(double x, double y, const std::string& s, Anchor anchor, double size, Color c,
            bool vertical) override {
    const int scale = size >= 12 ? 2 : 1;
    const double w = text_width(s, size);
    double start = anchor == Anchor::kStart ? 0 : anchor == Anchor::kMiddle ? -w / 2 : -w;
    for (size_t i = 0; i < s.size(); ++i) {
      const uint8_t* rows = glyph(s[i]);
      for (int gy = 0; gy < 7; ++gy) {
        for (int gx = 0; gx < 5; ++gx) {
          if (!(rows[gy] & (0x10 >> gx))) continue;
          // Glyph cell (gx, gy) of character i, 7 rows above the baseline.
          const double along = start + (static_cast<double>(i) * 6 + gx) * scale;
          const double up = (7 - gy) * scale;
          if (vertical) {
            fill_rect(x - up, y - along - scale, scale, scale, c);
          } else {
            fill_rect(x + along, y - up, scale, scale, c);
          }
        }
      }
    }
  }
  double text_width(const std::string& s, double size) const override {
    const int scale = size >= 12 ? 2 : 1;
    return s.empty() ? 0.0 : (static_cast<double>(s.size()) * 6 - 1) * scale;
  }
  RgbImage& image() { return image_; }

 private:
  void blend(int x, int y, Color c, double a) {
    uint8_t* p = image_.pixels.data() + (static_cast<size_t>(y) * image_.width + x) * 3;
    const uint8_t rgb[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) {
      p[k] = static_cast<uint8_t>(std::lround(p[k] * (1.0 - a) + rgb[k] * a));
    }
  }

  RgbImage image_;
};

// ---- Axes

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  int decimals = 0;

  double position(double v, double a, double b) const {
    const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                         : (v - lo) / (hi - lo);
    return a + t * (b - a);
  }
  std::string label(double v) const {
    char buf[32];
    const double m = std::max(std::fabs(lo), std::fabs(hi));
    if (log || m >= 1e6 || (m < 1e-3 && m > 0)) {
      std::snprintf(buf, sizeof buf, "%g", v);
    } else {
      std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    }
    return buf;
  }
};

/// 1, 2 or 5 times a power of ten, close to `x`.
double nice_step(double x) {
  const double p = std::pow(10.0, std::floor(std::log10(x)));
  const double f = x / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

Axis make_axis(double min, double max, bool log) {
  Axis a;
  if (log && min > 0 && max / min > 10.0) {
    a.log = true;
    const double e0 = std::floor(std::log10(min) + 1e-9), e1 = std::ceil(std::log10(max) - 1e-9);
    a.lo = std::pow(10.0, e0);
    a.hi = std::pow(10.0, std::max(e1, e0 + 1));
    for (double e = e0; e <= std::max(e1, e0 + 1) + 1e-9; e += 1) a.ticks.push_back(std::pow(10.0, e));
    return a;
  }
  if (max <= min) {
    const double d = min == 0 ? 1.0 : std::fabs(min) * 0.5;
    min -= d;
    max += d;
  }
  const double step = nice_step((max - min) / 5.0);
  const double k0 = std::floor(min / step + 1e-9), k1 = std::ceil(max / step - 1e-9);
  a.lo = k0 * step;
  a.hi = std::max(k1, k0 + 1) * step;
  for (double k = k0; k <= std::max(k1, k0 + 1) + 1e-9; k += 1) a.ticks.push_back(k * step);
  a.decimals = std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 6);
  return a;
}

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

void draw_panel(Canvas& c, const PlotPanel& p, std::pair<double, double> xrange, double ox,
                double oy, double w, double h) {
  const double left = ox + 78, right = ox + w - 16, top = oy + 34, bottom = oy + h - 48;
  double ymin = std::numeric_limits<double>::infinity(), ymax = -ymin;
  bool all_positive = true;
  for (const auto& s : p.series) {
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
      all_positive = all_positive && s.y[i] > 0;
    }
  }
  if (!std::isfinite(ymin)) ymin = ymax = 0;
  const Axis ax = make_axis(xrange.first, xrange.second, false);
  const Axis ay = make_axis(ymin, ymax, p.log_y && all_positive);

  c.text((left + right) / 2, oy + 20, p.title, Anchor::kMiddle, 14, kBlack);
  for (double t : ax.ticks) {
    const double x = ax.position(t, left, right);
    c.line(x, top, x, bottom, kGrid, 1);
    c.line(x, bottom, x, bottom + 5, kFrame, 1);
    c.text(x, bottom + 18, ax.label(t), Anchor::kMiddle, 11, kBlack);
  }
  for (double t : ay.ticks) {
    const double y = ay.position(t, bottom, top);
    c.line(left, y, right, y, kGrid, 1);
    c.line(left - 5, y, left, y, kFrame, 1);
    c.text(left - 8, y + 4, ay.label(t), Anchor::kEnd, 11, kBlack);
  }
  c.stroke_rect(left, top, right - left, bottom - top, kFrame);
  c.text((left + right) / 2, oy + h - 10, p.x_label, Anchor::kMiddle, 12, kBlack);
  c.text(ox + 16, (top + bottom) / 2, p.y_label + (ay.log ? " (log)" : ""), Anchor::kMiddle, 12,
         kBlack, /*vertical=*/true);

  for (size_t i = 0; i < p.series.size(); ++i) {
    const auto& s = p.series[i];
    std::vector<std::pair<double, double>> pts;
    for (size_t j = 0; j < std::min(s.x.size(), s.y.size()); ++j) {
      if (!std::isfinite(s.x[j]) || !std::isfinite(s.y[j]) || (ay.log && s.y[j] <= 0)) continue;
      pts.emplace_back(ax.position(s.x[j], left, right), ay.position(s.y[j], bottom, top));
    }
    if (!pts.empty()) c.polyline(pts, kPalette[i % 8], 2);
  }
  // Legend, top right inside the frame.
  double widest = 0;
  for (const auto& s : p.series) widest = std::max(widest, c.text_width(s.label, 11));
  const double lw = widest + 40, lh = 8 + 16.0 * static_cast<double>(p.series.size());
  const double lx = right - lw - 8, ly = top + 8;
  c.fill_rect(lx, ly, lw, lh, kWhite);
  c.stroke_rect(lx, ly, lw, lh, kFrame);
  for (size_t i = 0; i < p.series.size(); ++i) {
    const double y = ly + 12 + 16.0 * static_cast<double>(i);
    c.line(lx + 6, y, lx + 26, y, kPalette[i % 8], 2);
    c.text(lx + 32, y + 4, p.series[i].label, Anchor::kStart, 11, kBlack);
  }
}

struct Size {
  int width, height, header;
};

Size figure_size(const std::vector<PlotPanel>& panels, const PlotOptions& o) {
  if (panels.empty()) throw Error("plot: nothing to draw (no panels)");
  const int cols = std::max(1, std::min<int>(o.columns(), static_cast<int>(panels.size())));
  const int rows = (static_cast<int>(panels.size()) + cols - 1) / cols;
  const int header = o.title().empty() ? 0 : 30;
  return {cols * o.panel_width(), rows * o.panel_height() + header, header};
}

void draw_figure(Canvas& c, const std::vector<PlotPanel>& panels, const PlotOptions& o,
                 const Size& size) {
  c.fill_rect(0, 0, size.width, size.height, kWhite);
  if (!o.title().empty()) c.text(size.width / 2.0, 21, o.title(), Anchor::kMiddle, 15, kBlack);
  const int cols = size.width / o.panel_width();
  const auto xrange = x_extent(panels);
  for (size_t i = 0; i < panels.size(); ++i) {
    const double ox = static_cast<double>(i % cols) * o.panel_width();
    const double oy = size.header + static_cast<double>(i / cols) * o.panel_height();
    draw_panel(c, panels[i], xrange, ox, oy, o.panel_width(), o.panel_height());
  }
}

}  // namespace

std::string render_svg(const std::vector<PlotPanel>& panels, const PlotOptions& options) {
  const Size size = figure_size(panels, options);
  SvgCanvas c;
  draw_figure(c, panels, options, size);
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
         "width=\"" + std::to_string(size.width) + "\" height=\"" + std::to_string(size.height) +
         "\" viewBox=\"0 0 " + std::to_string(size.width) + " " + std::to_string(size.height) +
         "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n" + c.out() + "</svg>\n";
}

RgbImage render_raster(const std::vector<PlotPanel>& panels, const PlotOptions& options) {
  const Size size = figure_size(panels, options);
  RasterCanvas c(size.width, size.height);
  draw_figure(c, panels, options, size);
  return std::move(c.image());
}

// ---- PNG ---------------------------------------------------------------------------------

namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
}

void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out, static_cast<uint32_t>(
                   crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

}  // namespace

std::string encode_png(const RgbImage& image) {
  HOLO_CHECK(image.width > 0 && image.height > 0 &&
                 image.pixels.size() == static_cast<size_t>(image.width) * image.height * 3,
             "PNG: image size does not match its pixels");
  // Each row: filter type 0 (none), then the RGB bytes.
  std::string raw;
  raw.reserve(static_cast<size_t>(image.height) * (1 + image.width * 3));
  for (int y = 0; y < image.height; ++y) {
    raw += '\0';
    raw.append(reinterpret_cast<const char*>(image.pixels.data()) + static_cast<size_t>(y) * image.width * 3,
               static_cast<size_t>(image.width) * 3);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  const int rc = compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                           reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()), 6);
  if (rc != Z_OK) throw Error("PNG: zlib compress2 failed with code " + std::to_string(rc));
  packed.resize(packed_size);

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string header;
  put_u32(header, static_cast<uint32_t>(image.width));
  put_u32(header, static_cast<uint32_t>(image.height));
  header += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit, RGB, deflate, no filter, no interlace
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", packed);
  put_chunk(png, "IEND", "");
  return png;
}

CurveFiles write_curves(const std::string& run_dir) {
  const std::filesystem::path dir(run_dir);
  const std::string metrics = (dir / "metrics.jsonl").string();
  if (!std::filesystem::exists(metrics)) {
    throw IoError("no metrics file in the run directory: " + metrics);
  }
  const auto records = read_metrics_jsonl(metrics);
  const auto panels = curves_from_metrics(records);
  if (panels.empty()) throw IoError(metrics + ": no numeric metric to plot");
  std::string name = dir.filename().string();
  if (name.empty()) name = dir.parent_path().filename().string();
  const PlotOptions options = PlotOptions().title(name);
  CurveFiles files;
  files.svg = (dir / "curves.svg").string();
  files.png = (dir / "curves.png").string();
  files.panels = static_cast<int64_t>(panels.size());
  files.records = static_cast<int64_t>(records.size());
  write_file_atomic(files.svg, render_svg(panels, options));
  write_file_atomic(files.png, encode_png(render_raster(panels, options)));
  return files;
}

}  // namespace holo
