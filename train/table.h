#pragma once
/// Plain-text tables with aligned columns, for the final summary of a run, evaluation results
/// and `holo cluster`. Cells that look like numbers are right-aligned, others left-aligned.
///
///   split  top1 (%)  top5 (%)
///   -----  --------  --------
///   val       91.25     99.50

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace holo {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);

  /// Adds a row; it must have as many cells as the header. Throws holo::Error otherwise.
  TextTable& add_row(std::vector<std::string> cells);
  /// Adds a horizontal rule before the next row.
  TextTable& add_rule();

  int64_t rows() const { return static_cast<int64_t>(rows_.size()); }

  /// The table as text, one line per row, no trailing spaces, ending with a newline.
  std::string str() const;
  /// The table as a GitHub Markdown table.
  std::string markdown() const;

  /// `value` with `digits` decimals ("-" for nullopt or a non-finite value).
  static std::string number(std::optional<double> value, int digits = 2);
  /// 100 * `fraction` with `digits` decimals ("-" for nullopt or a non-finite value).
  static std::string percent(std::optional<double> fraction, int digits = 2);

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<size_t> rules_;  ///< row indices preceded by a rule
};

}  // namespace holo
