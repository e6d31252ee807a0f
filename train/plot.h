#pragma once
/// Training curves from a run's metrics.jsonl: one panel for the loss, one for the learning
/// rate and one per other metric (top1, top5, map, ...), each against the step, drawn as SVG and
/// as PNG (a small built-in rasteriser and PNG writer; no plotting library). `holo plot RUN_DIR`
/// writes RUN_DIR/curves.svg and RUN_DIR/curves.png.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace holo {

/// One line of metrics.jsonl: {"step", "epoch", "split", "loss", "lr", metrics..., "time"}.
struct MetricsRecord {
  int64_t step = 0;
  std::string split;                                   ///< "train" or "val" (any name works)
  std::vector<std::pair<std::string, double>> values;  ///< numeric keys in file order
};

/// Reads metrics.jsonl. Blank lines are skipped; a torn last line (a run killed while writing)
/// is skipped with a warning. Throws holo::IoError naming the file and line for an unreadable
/// file, a line that is not a JSON object, or a line without an integer "step" and a string
/// "split". Keys with non-numeric values (null, strings, booleans) are left out.
std::vector<MetricsRecord> read_metrics_jsonl(const std::string& path);

/// One curve.
struct PlotSeries {
  std::string label;
  std::vector<double> x;
  std::vector<double> y;
};

/// One chart with its own axes.
struct PlotPanel {
  std::string title;
  std::string x_label = "step";
  std::string y_label;
  bool log_y = false;  ///< logarithmic y axis (used when every value is positive)
  std::vector<PlotSeries> series;
};

/// The panels for a run: "loss" (one series per split), "learning rate" (log scale when it
/// spans more than a factor 20) and one per other numeric key, in order of first appearance,
/// with one series per split having it. "step", "epoch" and "time" are not plotted. When a
/// (split, step) pair occurs more than once (a run resumed from an earlier checkpoint), the
/// last line wins. Points are sorted by step. Panels share the step range.
std::vector<PlotPanel> curves_from_metrics(const std::vector<MetricsRecord>& records);

struct PlotOptions {
  PlotOptions& columns(int v) { columns_ = v; return *this; }
  int columns() const { return columns_; }
  /// Size of one panel in pixels (SVG user units).
  PlotOptions& panel_width(int v) { panel_width_ = v; return *this; }
  int panel_width() const { return panel_width_; }
  PlotOptions& panel_height(int v) { panel_height_ = v; return *this; }
  int panel_height() const { return panel_height_; }
  /// Title above all panels (e.g. the run directory's name); empty for none.
  PlotOptions& title(std::string v) { title_ = std::move(v); return *this; }
  const std::string& title() const { return title_; }

 private:
  int columns_ = 2;
  int panel_width_ = 560;
  int panel_height_ = 340;
  std::string title_;
};

/// The panels as an SVG document: per panel a frame, ticks with labels, axis labels, a title,
/// a legend, and one <polyline> per series with one point per finite (x, y) pair (a series
/// without such a point draws no polyline). Throws holo::Error when there are no panels.
std::string render_svg(const std::vector<PlotPanel>& panels, const PlotOptions& options = {});

/// An 8-bit RGB image.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  ///< row-major, 3 bytes per pixel
};

/// The same drawing rasterised (anti-aliased lines, a built-in 5x7 pixel font that shows
/// letters as capitals).
RgbImage render_raster(const std::vector<PlotPanel>& panels, const PlotOptions& options = {});

/// PNG file bytes (8-bit RGB, zlib-compressed, unfiltered rows).
std::string encode_png(const RgbImage& image);

/// Paths written by write_curves.
struct CurveFiles {
  std::string svg;
  std::string png;
  int64_t panels = 0;
  int64_t records = 0;
};

/// Reads `run_dir`/metrics.jsonl and writes `run_dir`/curves.svg and curves.png atomically.
/// Throws holo::IoError when there is no metrics file or it has no plottable value.
CurveFiles write_curves(const std::string& run_dir);

}  // namespace holo
