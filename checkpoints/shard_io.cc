#include "checkpoints/shard_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_numbers.h"

namespace holo::ckpt {
namespace {

constexpr char kMagic[8] = {'H', 'O', 'L', 'O', 'S', 'H', 'D', '1'};
constexpr size_t kAlign = 64;

const std::map<torch::ScalarType, std::string>& dtype_names() {
  static const std::map<torch::ScalarType, std::string> m = {
      {torch::kFloat32, "float32"}, {torch::kFloat64, "float64"}, {torch::kFloat16, "float16"},
      {torch::kBFloat16, "bfloat16"}, {torch::kInt64, "int64"},   {torch::kInt32, "int32"},
      {torch::kInt16, "int16"},     {torch::kInt8, "int8"},       {torch::kUInt8, "uint8"},
      {torch::kBool, "bool"}};
  return m;
}

torch::ScalarType dtype_from_name(const std::string& name, const std::string& file) {
  for (const auto& [t, n] : dtype_names()) {
    if (n == name) return t;
  }
  throw IoError("shard '" + file + "': unknown dtype '" + name + "'");
}

std::string hex64(uint64_t x) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

/// RAII file descriptor.
class Fd {
 public:
  Fd(const std::string& path, int flags) : path_(path), fd_(::open(path.c_str(), flags | O_CLOEXEC, 0644)) {
    if (fd_ < 0) throw IoError("cannot open '" + path + "': " + std::strerror(errno));
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void write_all(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw IoError("cannot write '" + path_ + "': " + std::strerror(errno));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void read_all(void* data, size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      const ssize_t r = ::read(fd_, p, n);
      if (r < 0) {
        if (errno == EINTR) continue;
        throw IoError("cannot read '" + path_ + "': " + std::strerror(errno));
      }
      if (r == 0) throw IoError("shard '" + path_ + "' is truncated");
      p += r;
      n -= static_cast<size_t>(r);
    }
  }
  void sync_and_close() {
    if (::fsync(fd_) != 0) throw IoError("cannot fsync '" + path_ + "': " + std::strerror(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw IoError("cannot close '" + path_ + "': " + std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_;
};

struct XxhState {
  XxhState() : s(XXH3_createState()) { XXH3_64bits_reset(s); }
  ~XxhState() { XXH3_freeState(s); }
  void update(const void* p, size_t n) { XXH3_64bits_update(s, p, n); }
  std::string digest() const { return hex64(XXH3_64bits_digest(s)); }
  XXH3_state_t* s;
};

}  // namespace

ShardInfo write_shard(const std::string& path, const NamedTensors& tensors) {
  std::vector<torch::Tensor> cpu;
  cpu.reserve(tensors.size());
  nlohmann::json header;
  header["tensors"] = nlohmann::json::array();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    HOLO_CHECK(t.defined(), "shard '" + path + "': tensor '" + name + "' is undefined");
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    auto it = dtype_names().find(c.scalar_type());
    if (it == dtype_names().end()) {
      throw IoError("shard '" + path + "': tensor '" + name + "' has an unsupported dtype");
    }
    const uint64_t nbytes = c.numel() * c.element_size();
    header["tensors"].push_back({{"name", name},
                                 {"dtype", it->second},
                                 {"shape", c.sizes().vec()},
                                 {"offset", offset},
                                 {"nbytes", nbytes}});
    offset += nbytes;
    cpu.push_back(std::move(c));
  }
  const std::string text = header.dump();
  const uint64_t header_len = text.size();
  const size_t prefix = sizeof kMagic + sizeof header_len + text.size();
  const std::string pad((kAlign - prefix % kAlign) % kAlign, '\0');

  Fd fd(path, O_WRONLY | O_CREAT | O_TRUNC);
  XxhState h;
  auto put = [&](const void* p, size_t n) {
    h.update(p, n);
    fd.write_all(p, n);
  };
  put(kMagic, sizeof kMagic);
  put(&header_len, sizeof header_len);
  put(text.data(), text.size());
  put(pad.data(), pad.size());
  for (const auto& c : cpu) put(c.data_ptr(), c.numel() * c.element_size());
  fd.sync_and_close();
  return ShardInfo{path.substr(path.rfind('/') + 1), prefix + pad.size() + offset, h.digest()};
}

// The function try block turns a header that is JSON but not a shard's (another type, a missing
// field, a shape torch refuses) into an IoError naming the file, like any other damage.
NamedTensors read_shard(const std::string& path, const std::string& expected_checksum) try {
  Fd fd(path, O_RDONLY);
  XxhState h;
  auto get = [&](void* p, size_t n) {
    fd.read_all(p, n);
    h.update(p, n);
  };
  char magic[8];
  get(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, sizeof kMagic) != 0) {
    throw IoError("'" + path + "' is not a Holo shard file (bad magic)");
  }
  uint64_t header_len = 0;
  get(&header_len, sizeof header_len);
  if (header_len > (64u << 20)) throw IoError("shard '" + path + "': header length is corrupt");
  std::string text(header_len, '\0');
  get(text.data(), text.size());
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw IoError("shard '" + path + "': header is not valid JSON: " + e.what());
  }
  const size_t prefix = sizeof kMagic + sizeof header_len + text.size();
  std::string pad((kAlign - prefix % kAlign) % kAlign, '\0');
  get(pad.data(), pad.size());

  // Every tensor is checked against its shape and the bytes the file holds before it is
  // allocated: a damaged header must not make the loader ask for more memory than that.
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw IoError("cannot stat '" + path + "': " + std::strerror(errno));
  const uint64_t head = prefix + pad.size();
  const uint64_t data_bytes = static_cast<uint64_t>(st.st_size) > head ? static_cast<uint64_t>(st.st_size) - head : 0;
  NamedTensors out;
  uint64_t expect_offset = 0;
  for (const auto& e : header.at("tensors")) {
    const std::string name = e.at("name");
    std::vector<int64_t> shape;
    for (const auto& d : e.at("shape")) shape.push_back(json_number<int64_t>(d, "shape"));
    const auto nbytes = json_number_at<uint64_t>(e, "nbytes");
    if (json_number_at<uint64_t>(e, "offset") != expect_offset) {
      throw IoError("shard '" + path + "': tensor '" + name + "' has a corrupt offset");
    }
    if (nbytes > data_bytes - expect_offset) {
      throw IoError("shard '" + path + "' is truncated: tensor '" + name + "' runs past its end");
    }
    const torch::ScalarType dtype = dtype_from_name(e.at("dtype"), path);
    uint64_t numel = 1;
    bool fits = true;
    for (const int64_t d : shape) {
      if (d < 0 || (d > 0 && numel > nbytes / static_cast<uint64_t>(d))) fits = false;
      numel *= fits ? static_cast<uint64_t>(d) : 1;
    }
    if (!fits || numel * c10::elementSize(dtype) != nbytes) {
      throw IoError("shard '" + path + "': tensor '" + name + "' size does not match its shape");
    }
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype));
    get(t.data_ptr(), nbytes);
    expect_offset += nbytes;
    out.emplace_back(name, std::move(t));
  }
  char extra;
  if (::read(fd.get(), &extra, 1) > 0) throw IoError("shard '" + path + "' has trailing bytes");
  if (!expected_checksum.empty() && h.digest() != expected_checksum) {
    throw IoError("shard '" + path + "' is corrupted: checksum " + h.digest() +
                  ", manifest says " + expected_checksum);
  }
  return out;
} catch (const nlohmann::json::exception& e) {
  throw IoError("shard '" + path + "': header is not a shard header: " + e.what());
} catch (const std::out_of_range& e) {  // json_number
  throw IoError("shard '" + path + "': header is not a shard header: " + e.what());
} catch (const c10::Error& e) {
  throw IoError("shard '" + path + "': " + e.what_without_backtrace());
}

std::string file_checksum(const std::string& path) {
  Fd fd(path, O_RDONLY);
  XxhState h;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t r = ::read(fd.get(), buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      throw IoError("cannot read '" + path + "': " + std::strerror(errno));
    }
    if (r == 0) break;
    h.update(buf.data(), static_cast<size_t>(r));
  }
  return h.digest();
}

}  // namespace holo::ckpt
