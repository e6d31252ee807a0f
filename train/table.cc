#include "train/table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace holo {
namespace {

bool looks_numeric(const std::string& s) {
  if (s.empty() || s == "-") return s == "-";
  size_t i = 0;
  if (s[i] == '-' || s[i] == '+') ++i;
  bool digit = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c != '.' && c != 'e' && c != 'E' && c != '-' && c != '+' && c != '%' &&
               c != 'x') {
      return false;
    }
  }
  return digit;
}

/// Display width: counts UTF-8 code points, not bytes.
size_t width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xC0) != 0x80 ? 1 : 0;
  return w;
}

std::string pad(const std::string& s, size_t w, bool right) {
  const std::string fill(w - std::min(w, width(s)), ' ');
  return right ? fill + s : s + fill;
}

void strip_trailing(std::string& line) {
  while (!line.empty() && line.back() == ' ') line.pop_back();
}

}  // namespace

TextTable::TextTable(std::vector<std::string> header) : header_(std::move(header)) {
  HOLO_CHECK(!header_.empty(), "a table needs at least one column");
}

TextTable& TextTable::add_row(std::vector<std::string> cells) {
  if (cells.size() != header_.size()) {
    throw Error("table row has " + std::to_string(cells.size()) + " cells for " +
                std::to_string(header_.size()) + " columns (first cell: '" +
                (cells.empty() ? std::string() : cells[0]) + "')");
  }
  rows_.push_back(std::move(cells));
  return *this;
}

TextTable& TextTable::add_rule() {
  rules_.push_back(rows_.size());
  return *this;
}

std::string TextTable::str() const {
  const size_t nc = header_.size();
  std::vector<size_t> w(nc);
  std::vector<bool> right(nc, true);
  for (size_t c = 0; c < nc; ++c) {
    w[c] = width(header_[c]);
    bool any = false;
    for (const auto& r : rows_) {
      w[c] = std::max(w[c], width(r[c]));
      if (r[c] != "-" && !r[c].empty()) {
        any = true;
        if (!looks_numeric(r[c])) right[c] = false;
      }
    }
    if (!any) right[c] = false;
  }
  auto line_of = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < nc; ++c) {
      if (c > 0) line += "  ";
      line += pad(cells[c], w[c], right[c]);
    }
    strip_trailing(line);
    return line + "\n";
  };
  std::string rule;
  for (size_t c = 0; c < nc; ++c) rule += (c > 0 ? "  " : "") + std::string(w[c], '-');
  rule += "\n";
  std::string out = line_of(header_) + rule;
  for (size_t r = 0; r < rows_.size(); ++r) {
    if (std::find(rules_.begin(), rules_.end(), r) != rules_.end() && r > 0) out += rule;
    out += line_of(rows_[r]);
  }
  return out;
}

std::string TextTable::markdown() const {
  auto line_of = [](const std::vector<std::string>& cells) {
    std::string line = "|";
    for (const auto& c : cells) line += " " + c + " |";
    return line + "\n";
  };
  std::string out = line_of(header_) + "|";
  for (size_t c = 0; c < header_.size(); ++c) out += "---|";
  out += "\n";
  for (const auto& r : rows_) out += line_of(r);
  return out;
}

std::string TextTable::number(std::optional<double> value, int digits) {
  if (!value || !std::isfinite(*value)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, *value);
  return buf;
}

std::string TextTable::percent(std::optional<double> fraction, int digits) {
  if (!fraction) return "-";
  return number(100.0 * *fraction, digits);
}

}  // namespace holo
