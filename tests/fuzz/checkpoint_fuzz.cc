// Checkpoint manifests and shards (checkpoints/checkpoint.cc, shard_io.cc): Manager::survey,
// Manager::verify, a Manager's start (it lists the checkpoints and their scores), Manager::load
// and Manager::load_latest over a checkpoint folder whose newest checkpoint, step-00000001,
// holds the fuzzed manifest.json and shard. A checkpoint that cannot be loaded must be refused
// with holo::Error (IoError naming the folder and the shard); any other exception, sanitizer
// report or abort is a crash. The folder also holds step-00000000, a good checkpoint of the
// same run, so load_latest must always return a checkpoint: a bad newest one is skipped, never
// the end of a resume ("Nothing lost", docs/checkpoint-format.md).
//
// Input: manifest.json's bytes, then, from the first "HOLOSHD1" (a shard file's magic) on, the
// bytes of shard-00000-of-00001.holo; without one the shard is a copy of step-00000000's.

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>

#include "checkpoints/checkpoint.h"
#include "core/error.h"
#include "tests/fuzz/fuzz_util.h"

namespace fs = std::filesystem;

namespace {

constexpr char kRunId[] = "fuzz-run";
constexpr char kShard[] = "shard-00000-of-00001.holo";

fs::path root() { return holo::fuzz::scratch_dir("checkpoint") / "checkpoints"; }

std::string read_bytes(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

/// step-00000000's shard, the one used when the input brings none.
const std::string& good_shard() {
  static const std::string bytes =
      read_bytes(fs::path(holo::ckpt::Manager::step_dir(root().string(), 0)) / kShard);
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  holo::fuzz::quiet_logs();
  holo::ckpt::ManagerOptions options;
  options.background = false;
  options.run_id = kRunId;
  options.attempt_id = "fuzz-attempt";
  holo::ckpt::Manager manager(root().string(), options);
  // Every dtype a shard may hold, a scalar and an empty tensor, as in the trainer's state.
  holo::ckpt::Snapshot s;
  s.step = 0;
  s.replicated = {{"model.w", torch::arange(6, torch::kFloat32).reshape({2, 3})},
                  {"model.h", torch::ones({2}, torch::kFloat16)},
                  {"model.b", torch::ones({2}, torch::kBFloat16)},
                  {"model.n", torch::tensor(int64_t{7})},
                  {"model.m", torch::ones({3}, torch::kBool)},
                  {"model.e", torch::empty({0, 3})},
                  {"optim.v", torch::zeros({2}, torch::kFloat64)},
                  {"optim.i", torch::zeros({2}, torch::kInt32)},
                  {"optim.s", torch::zeros({2}, torch::kInt16)},
                  {"optim.c", torch::zeros({2}, torch::kInt8)},
                  {"optim.u", torch::zeros({2}, torch::kUInt8)}};
  s.per_rank = {{"rng.cpu", torch::zeros({4}, torch::kInt64)}};
  s.meta = {{"loader", {{"cursor", 4}}}};
  s.recipe_toml = "[run]\nname = \"fuzz\"\n";
  s.dataset_hash = "0123456789abcdef";
  manager.save(s, true);
  good_shard();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t magic = input.find("HOLOSHD1");
  const fs::path dir = holo::ckpt::Manager::step_dir(root().string(), 1);
  fs::remove_all(dir);
  holo::fuzz::write_file(dir / "manifest.json", input.substr(0, magic));
  holo::fuzz::write_file(dir / kShard,
                         magic == std::string_view::npos ? good_shard() : input.substr(magic));

  holo::ckpt::Manager::survey(root().string(), kRunId);
  holo::ckpt::Manager::verify(dir.string());
  try {
    // What a run does at its start: list the checkpoints and their scores (keep-best).
    holo::ckpt::ManagerOptions options;
    options.run_id = kRunId;
    holo::ckpt::Manager manager(root().string(), options);
  } catch (const holo::Error&) {
    // refused, with a message
  }
  try {
    holo::ckpt::Manager::load(dir.string(), 0, 1);
  } catch (const holo::Error&) {
    // refused, with a message
  }
  std::optional<holo::ckpt::Loaded> latest;
  try {
    latest = holo::ckpt::Manager::load_latest(root().string(), 0, 1);
  } catch (const holo::Error& e) {
    holo::fuzz::fail("no checkpoint loads although step-00000000 is good: " +
                     std::string(e.what()));
  }
  if (!latest) holo::fuzz::fail("no checkpoint found although step-00000000 is good");
  return 0;
}
