#pragma once
/// Training curves from a run's metrics.jsonl, drawn with cairo (DejaVu Sans) to SVG and PNG
/// from the same drawing code. `holo plot RUN_DIR` writes RUN_DIR/curves.svg and curves.png.

#include <cstdint>
#include <limits>
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
  /// Optional band around the curve (min and max of a per-clip cost): empty, or one per x.
  std::vector<double> band_lo, band_hi;
  bool markers = false;  ///< a dot at every point (sparse series such as validations)
  bool dashed = false;   ///< a dashed line (a secondary metric beside the panel's main one)
  int color = -1;        ///< index into the palette; -1: the series' position in its panel
  int layer = 0;         ///< drawn over the series of lower layers
};

/// One chart with its own axes.
struct PlotPanel {
  std::string title;
  std::string x_label = "step";
  std::string y_label;
  bool log_y = false;  ///< logarithmic y axis (used when every value is positive)
  /// Bounds the y axis never passes, however it is rounded: 0 for losses, rates and costs,
  /// 0 and 1 for accuracies and mAP. NaN: none.
  double y_floor = std::numeric_limits<double>::quiet_NaN();
  double y_ceiling = std::numeric_limits<double>::quiet_NaN();
  std::vector<PlotSeries> series;
};

/// What a run's records give to draw.
struct Curves {
  std::vector<PlotPanel> panels;
  /// Series left out because every value is the same, as "train lr 0.01" (split, key, value).
  std::vector<std::string> constants;
};

/// The panels for a run, each only when it carries information:
/// - "loss": the training loss and the validation loss (one series per split);
///   "loss per head": the heads' training losses (loss_<category>) of a multi-task run;
/// - "accuracy" (fractions, 0..1): training `acc` and validation `top1`, `top<k>` and
///   `mean_class_acc`; a `top<k>` with k >= `num_classes` (always 1) is left out, and when
///   `num_classes` is 0 (unknown) so is a `top<k>` that is 1 at every validation;
/// - "mAP" (0..1): `mAP` and `mAP_<category>`;
/// - "learning rate" (log scale when it spans more than a factor 20), "throughput"
///   (`clips_per_s`), and per SGS cost (`<name>_mean`, `_min`, `_max`: "GFLOPs per clip",
///   "active bins per clip") the mean with a min..max band;
/// - one panel per other numeric key, in order of first appearance.
/// "step", "epoch", "time" and "videos" are not plotted. A panel whose every series has two or
/// more points and never changes is left out, its series listed in `constants` (as is a
/// constant "videos"); a constant series beside one that changes is drawn (a validation stuck
/// at chance). When a (split, step) pair occurs more than once (a run resumed from an earlier
/// checkpoint), the last line wins. Points are sorted by step; panels share the step range.
Curves curves_from_metrics(const std::vector<MetricsRecord>& records, int64_t num_classes = 0);

/// The class count that `run_dir`/recipe.toml records (data.num_classes, or data.synth_classes
/// of a synthetic single-label dataset); 0 when it records none or cannot be read.
int64_t recorded_num_classes(const std::string& run_dir);

struct PlotOptions {
  int columns = 2;
  int panel_width = 560;   ///< size of one panel in pixels (SVG user units)
  int panel_height = 340;
  std::string title;       ///< above all panels (e.g. the run directory's name); empty for none
  std::string note;        ///< a smaller line under the title (e.g. the constant series); empty for none

  PlotOptions& set_title(std::string v) { title = std::move(v); return *this; }
  PlotOptions& set_note(std::string v) { note = std::move(v); return *this; }
};

/// A y axis: its range and tick values.
struct PlotAxis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
};

/// The y axis `panel` is drawn with: rounded outwards to tick values around every finite
/// value (bands included), within the panel's floor and ceiling.
PlotAxis y_axis(const PlotPanel& panel);

/// The panels as an SVG document (text as DejaVu Sans glyph outlines): per panel a title, a
/// legend above the frame, ticks with labels, axis labels and the series. Throws holo::Error
/// when there are no panels.
std::string render_svg(const std::vector<PlotPanel>& panels, const PlotOptions& options = {});

/// The same drawing as PNG file bytes (24-bit RGB), the SVG's size in pixels.
std::string render_png(const std::vector<PlotPanel>& panels, const PlotOptions& options = {});

/// Paths written by write_curves.
struct CurveFiles {
  std::string svg;
  std::string png;
  int64_t panels = 0;
  int64_t records = 0;
  std::vector<std::string> constants;  ///< as Curves::constants
};

/// Reads `run_dir`/metrics.jsonl (and the class count of its recipe.toml) and writes
/// `run_dir`/curves.svg and curves.png atomically, titled with the directory's name and noting
/// the constant series. Throws holo::IoError when there is no metrics file or nothing in it
/// to draw.
CurveFiles write_curves(const std::string& run_dir);

}  // namespace holo
