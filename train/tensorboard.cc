#include "train/tensorboard.h"

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_numbers.h"
#include "train/tensorboard.pb.h"

namespace holo::train {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kPrefix = "events.out.tfevents.";

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool is_event_file(const fs::path& p) { return p.filename().string().rfind(kPrefix, 0) == 0; }

/// The <seconds> of events.out.tfevents.<seconds>.<host>, or -1.
int64_t name_seconds(const fs::path& p) {
  const std::string name = p.filename().string();
  if (!is_event_file(p)) return -1;
  const std::string rest = name.substr(kPrefix.size());
  const size_t end = rest.find('.');
  const std::string digits = rest.substr(0, end);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) {
  crc = ~crc;
  for (const unsigned char b : data) crc = kCrc32cTable[(crc ^ b) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(std::string_view data) {
  const uint32_t c = crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  put_le(out, masked_crc32c(out), 4);
  out.append(data);
  put_le(out, masked_crc32c(data), 4);
  return out;
}

std::vector<std::pair<std::string, double>> tensorboard_scalars(const nlohmann::json& line) {
  std::vector<std::pair<std::string, double>> out;
  if (!line.is_object()) return out;
  const std::string split =
      line.contains("split") && line["split"].is_string() ? line["split"].get<std::string>() : "";
  for (const auto& [key, value] : line.items()) {
    if (key == "step" || key == "split" || key == "epoch" || key == "time" || !value.is_number())
      continue;
    out.emplace_back(split.empty() ? key : split + "/" + key, value.get<double>());
  }
  return out;
}

std::string tensorboard_dir(const std::string& run_dir) {
  return (fs::path(run_dir) / "tb").string();
}

int remove_event_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  int removed = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || !is_event_file(e.path())) continue;
    if (!fs::remove(e.path(), ec))
      throw IoError("cannot remove '" + e.path().string() + "': " + ec.message());
    ++removed;
  }
  return removed;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError("cannot create '" + dir + "': " + ec.message());
  int64_t seconds = static_cast<int64_t>(unix_seconds());
  for (const auto& e : fs::directory_iterator(dir))
    seconds = std::max(seconds, name_seconds(e.path()) + 1);
  std::string host = process_identity().host;
  if (host.empty()) host = "localhost";
  // "x": created here or not at all (another writer raced us to the name: take the next second).
  for (int attempt = 0; attempt < 100 && !file_; ++attempt, ++seconds) {
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "%010lld", static_cast<long long>(seconds));
    path_ = (fs::path(dir) / (std::string(kPrefix) + stamp + "." + host)).string();
    file_.reset(std::fopen(path_.c_str(), "wbx"));
    if (!file_ && errno != EEXIST) break;
  }
  if (!file_)
    throw IoError("cannot create the TensorBoard event file '" + path_ +
                  "': " + std::strerror(errno));
  tensorboard::Event event;
  event.set_wall_time(unix_seconds());
  event.set_file_version("brain.Event:2");
  append(event.SerializeAsString());
}

void TensorBoardWriter::write(int64_t step,
                              const std::vector<std::pair<std::string, double>>& scalars) {
  if (scalars.empty()) return;
  tensorboard::Event event;
  event.set_wall_time(unix_seconds());
  event.set_step(step);
  auto* summary = event.mutable_summary();
  for (const auto& [tag, value] : scalars) {
    auto* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  append(event.SerializeAsString());
}

void TensorBoardWriter::write_metrics(const nlohmann::json& line) {
  write(json_number_at<int64_t>(line, "step"), tensorboard_scalars(line));
}

void TensorBoardWriter::append(const std::string& event) {
  const std::string record = tfrecord(event);
  if (std::fwrite(record.data(), 1, record.size(), file_.get()) != record.size() ||
      std::fflush(file_.get()) != 0) {
    throw IoError("cannot write the TensorBoard event file '" + path_ +
                  "': " + std::strerror(errno));
  }
}

}  // namespace holo::train
