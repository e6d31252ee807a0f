// holo version | holo doctor: what this build has, and what this machine offers.
#include <H5public.h>
#include <mpi.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/shell.h"
#include "dist/backends.h"
#include "holo/build_config.h"
#include "launcher/cli.h"
#include "pipeline/decoder.h"
#include "pipeline/ffmpeg_info.h"
#include "slurm/scheduler.h"

namespace holo::cli {
namespace {

/// One line of a report: a part, whether it is there, what was seen, and for a missing part
/// what to install or rebuild to get it.
struct Part {
  std::string name;
  bool found = false;
  std::string seen;
  std::string fix;  ///< for a missing part
};

void print_parts(const std::vector<Part>& parts) {
  for (const auto& p : parts) {
    std::string name = p.name;
    name.resize(std::max<size_t>(name.size(), 15), ' ');
    std::cout << "  " << name << (p.found ? "found    " : "missing  ") << p.seen << "\n";
    if (!p.found && !p.fix.empty())
      std::cout << std::string(26, ' ') << "to get it: " << p.fix << "\n";
  }
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

const char* const kCudaFix =
    "build Holo against a CUDA LibTorch, e.g. the one in a PyTorch install: "
    "cmake -S . -B build-gpu -DHOLO_TORCH_PYTHON=python3 (README.md, \"GPU build\")";

// ---- facts shared by version and doctor ----------------------------------------------------

std::string mpi_library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  if (MPI_Get_library_version(buf, &len) != MPI_SUCCESS) return "unknown";
  std::string v = first_line(std::string(buf, static_cast<size_t>(len)));
  const auto cut = v.find(", package");  // Open MPI: "Open MPI v4.1.4, package: ..."
  return cut == std::string::npos ? v : v.substr(0, cut);
}

std::string hdf5_version() {
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  return std::to_string(maj) + "." + std::to_string(min) + "." + std::to_string(rel);
}

int cuda_devices() { return HOLO_WITH_CUDA ? static_cast<int>(torch::cuda::device_count()) : 0; }

Part libtorch_part() {
  std::string seen = std::string(TORCH_VERSION) + ", " +
                     (HOLO_WITH_CUDA ? std::string("with CUDA") +
                                           (std::string(HOLO_TORCH_CUDA_VERSION).empty()
                                                ? ""
                                                : " (CUDA toolkit " + std::string(HOLO_TORCH_CUDA_VERSION) + " at build time)")
                                     : std::string("CPU only")) +
                     " (" + HOLO_TORCH_CONFIG_DIR + ")";
  return {"LibTorch", true, seen, ""};
}

Part cuda_part() {
  if (!HOLO_WITH_CUDA) {
    return {"CUDA", false, "this LibTorch (" TORCH_VERSION ") is a CPU build", kCudaFix};
  }
  if (!torch::cuda::is_available()) {
    return {
        "CUDA", false, "LibTorch has CUDA but finds no usable CUDA driver or device",
        "install the NVIDIA driver and check nvidia-smi and CUDA_VISIBLE_DEVICES (holo doctor)"};
  }
  return {"CUDA", true, "LibTorch has CUDA and the runtime works", ""};
}

Part gpus_part() {
  if (!HOLO_WITH_CUDA)
    return {"GPUs", false, "none looked for: a CPU LibTorch cannot use them", kCudaFix};
  const int n = cuda_devices();
  if (n == 0) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    const std::string why = visible != nullptr && std::string(visible).empty()
                                ? "none seen (CUDA_VISIBLE_DEVICES is empty)"
                                : "none seen";
    return {
        "GPUs", false, why,
        "an NVIDIA GPU with its driver (nvidia-smi lists it), not hidden by CUDA_VISIBLE_DEVICES"};
  }
  return {"GPUs", true, std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s") + " seen", ""};
}

Part nccl_part(bool try_loading) {
  if (!dist::nccl_built_in()) {
    return {"NCCL", false, "not compiled in (nccl.h was not found at build time)",
            "install NCCL (the CUDA toolkit's, or PyTorch's nvidia-nccl wheel, which "
            "-DHOLO_TORCH_PYTHON=python3 finds) and reconfigure; or point NCCL_HOME, or "
            "-DHOLO_NCCL_INCLUDE_DIR and -DHOLO_NCCL_LIBRARY, at it"};
  }
  std::string seen =
      std::string(HOLO_NCCL_VERSION) + " compiled in (headers in " + HOLO_NCCL_INCLUDE_DIR + ")";
  if (!try_loading) return {"NCCL", true, seen + "; loaded when a CUDA run needs it", ""};
  const std::string error = dist::nccl_unavailable_reason();
  if (!error.empty()) {
    return {
        "NCCL", false, seen + ", but it does not load: " + error,
        "put libnccl.so.2 and the CUDA runtime (libcudart) on the loader's path (LD_LIBRARY_PATH)"};
  }
  return {"NCCL", true, seen + "; libnccl and the CUDA runtime load", ""};
}

Part ffmpeg_part(const pipeline::FfmpegInfo& ff) {
  std::vector<std::string> libs;
  for (const auto& [name, version] : ff.libraries) libs.push_back(name + " " + version);
  std::string seen = ff.version + ": " + join(libs, ", ");
  if (!ff.missing_decoders.empty()) {
    return {"FFmpeg", false, seen + "; no decoder for " + join(ff.missing_decoders, ", "),
            "an FFmpeg with its native video decoders (Debian: libavcodec59 / libavcodec-dev)"};
  }
  return {"FFmpeg", true, seen, ""};
}

const char* const kNvdecFix =
    "an FFmpeg built with the NVIDIA codec headers (ffnvcodec; ./configure --enable-cuda "
    "--enable-nvdec, as Debian's libavcodec is), found through PKG_CONFIG_PATH when Holo is "
    "configured";

Part nvdec_part(const pipeline::FfmpegInfo& ff) {
  if (!HOLO_WITH_NVDEC) {
    return {"NVDEC", false,
            "not compiled in: FFmpeg's libavutil/hwcontext.h was not found at build time",
            kNvdecFix};
  }
  if (!ff.cuda_hwcontext || ff.nvdec_codecs.empty()) {
    return {"NVDEC", false,
            std::string("this FFmpeg has ") +
                (ff.cuda_hwcontext ? "the CUDA device type but no decoder with NVDEC"
                                   : "no CUDA device type"),
            kNvdecFix};
  }
  return {"NVDEC", true,
          "this FFmpeg decodes " + join(ff.nvdec_codecs, ", ") + " with NVDEC (the CUDA hwaccel)",
          ""};
}

void print_version() {
  const auto ff = pipeline::ffmpeg_info();
  std::cout << "holo " << HOLO_VERSION << " (" << HOLO_BUILD_TYPE << ")\n"
            << "libtorch " << TORCH_VERSION << "\n";
  std::vector<Part> parts = {libtorch_part(),  cuda_part(),     gpus_part(),
                             nccl_part(false), ffmpeg_part(ff), nvdec_part(ff)};
  parts.push_back({"MPI", true, mpi_library_version() + " (MPI " HOLO_MPI_VERSION ")", ""});
  parts.push_back({"HDF5", true, hdf5_version(), ""});
  print_parts(parts);
  std::cout << "holo doctor checks what this machine offers (driver, GPUs, NVDEC, MPI, SLURM).\n";
}

// ---- holo doctor ---------------------------------------------------------------------------

Part driver_part() {
  std::ifstream proc("/proc/driver/nvidia/version");
  std::string line;
  if (proc && std::getline(proc, line)) {
    std::smatch m;
    const std::string version = std::regex_search(line, m, std::regex("Kernel Module +([0-9.]+)"))
                                    ? m[1].str()
                                    : first_line(line);
    return {"NVIDIA driver", true, version + " (/proc/driver/nvidia/version)", ""};
  }
  const std::string smi = find_on_path("nvidia-smi");
  if (!smi.empty()) {
    const ShellRun r = run_shell_for(smi + " --query-gpu=driver_version,name --format=csv,noheader", 10);
    if (r.code == 0 && !first_line(r.out).empty())
      return {"NVIDIA driver", true, first_line(r.out) + " (nvidia-smi)", ""};
    return {"NVIDIA driver", false, "nvidia-smi fails: " + first_line(r.out),
            "install or repair the NVIDIA driver (nvidia-smi should list the GPUs)"};
  }
  return {"NVIDIA driver", false, "none: no /proc/driver/nvidia/version and no nvidia-smi on PATH",
          "the NVIDIA driver, on a machine with an NVIDIA GPU"};
}

struct Slurm {
  Part part;
  bool reachable = false;
  std::string why_not;     ///< why holo submit cannot be used, when it cannot
  std::string allocation;  ///< SLURM_JOB_ID when inside one
};

Slurm slurm_check() {
  const slurm::ClientProbe p = slurm::probe_client(/*timeout_s=*/5);
  return {{"SLURM", p.reachable, p.seen, p.fix}, p.reachable, p.why_not, p.allocation};
}

void doctor() {
  const auto ff = pipeline::ffmpeg_info();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::cout << "holo doctor: " << process_identity().host << ", " << cores << " CPU cores, holo " << HOLO_VERSION
            << " with LibTorch " << TORCH_VERSION << (HOLO_WITH_CUDA ? " (CUDA)" : " (CPU only)")
            << "\n\n";

  // Checks.
  const Part driver = driver_part();
  const Part gpus = gpus_part();
  const int gpu_count = gpus.found ? cuda_devices() : 0;
  const Part nccl = nccl_part(true);
  Part nvdec = nvdec_part(ff);
  std::string nvdec_reason;
  if (nvdec.found) {
    const auto a = pipeline::nvdec_availability(0);
    if (!a.available) {
      nvdec.found = false;
      nvdec.seen += ", but no device: " + a.reason;
      nvdec.fix = "an NVIDIA GPU with its driver (NVDEC needs libcuda.so.1)";
      nvdec_reason = a.reason;
    } else {
      nvdec.seen += "; a CUDA device context opens on GPU 0";
    }
  } else {
    nvdec_reason = nvdec.seen;
  }
  Part mpi{"MPI", false, "", ""};
  const std::string mpirun = find_on_path("mpirun");
  if (mpirun.empty()) {
    mpi.seen = "mpirun is not on PATH (library: " + mpi_library_version() + ")";
    mpi.fix = "OpenMPI's launcher (Debian: openmpi-bin), the same MPI Holo was built with";
  } else {
    const ShellRun r = run_shell_for(shell_quote(mpirun) + " --version", 10);
    mpi.found = r.code == 0;
    mpi.seen = mpirun + ": " +
               (r.code == 0 ? first_line(r.out) : "--version fails: " + first_line(r.out)) +
               "; library " + mpi_library_version();
    if (!mpi.found) mpi.fix = "a working mpirun (Debian: openmpi-bin)";
  }
  const Slurm slurm = slurm_check();
  std::cout << "checks:\n";
  print_parts({driver, gpus, nccl, nvdec, ffmpeg_part(ff), mpi, slurm.part});

  // What would run where, and why.
  std::cout << "\nwhat would run where:\n";
  const bool gpu = gpu_count > 0;
  std::string why_no_gpu;
  if (!gpu) {
    why_no_gpu = !HOLO_WITH_CUDA ? "no GPU is visible (this LibTorch is a CPU build)"
                 : !driver.found ? "no GPU is visible (no NVIDIA driver)"
                                 : "no GPU is visible (LibTorch sees no CUDA device)";
  }
  std::string training;
  if (gpu) {
    const std::string gpus_text = std::to_string(gpu_count) + " GPU" + (gpu_count == 1 ? "" : "s");
    training = nccl.found
                   ? "CUDA on " + gpus_text + ", one rank per GPU, gradients all-reduced with NCCL"
                   : "CUDA on one GPU, one rank only, because NCCL is not available: " +
                         first_line(nccl.seen);
  } else if (mpi.found) {
    training = "CPU with MPI all-reduce, because " + why_no_gpu;
  } else {
    training = "CPU, one worker only (no mpirun), because " + why_no_gpu;
  }
  std::cout << "  training:    " << training << "\n";
  std::cout << "  decoding:    "
            << (nvdec.found
                    ? "NVDEC on GPU 0 (decode.device = auto)"
                    : "CPU FFmpeg, because NVDEC is not available: " + first_line(nvdec_reason))
            << "\n";
  std::string launching;
  if (!slurm.allocation.empty()) {
    launching =
        "holo launch --np N starts its workers with srun, because this is SLURM allocation " +
        slurm.allocation;
  } else if (mpi.found) {
    launching =
        "holo launch --np N starts its workers with mpirun, because there is no SLURM allocation "
        "here";
  } else {
    launching =
        "holo launch --np 1 only (one worker, started directly), because mpirun is not on PATH";
  }
  std::cout << "  launching:   " << launching << "\n";
  std::cout << "  submitting:  "
            << (slurm.reachable ? "holo submit sends batch jobs to SLURM with sbatch"
                                : "holo submit cannot be used here, because " + slurm.why_not)
            << "\n";

  // Can this machine train at all: LibTorch computes and FFmpeg decodes the common codecs.
  std::vector<std::string> blockers;
  try {
    const auto x = torch::ones({4, 4}, torch::requires_grad());
    x.matmul(x).sum().backward();
    if (x.grad().sum().item<double>() != 128.0)
      blockers.push_back("LibTorch computes a wrong gradient");
  } catch (const std::exception& e) {
    blockers.push_back(std::string("LibTorch fails: ") + first_line(e.what()));
  }
  if (!ff.missing_decoders.empty())
    blockers.push_back("FFmpeg cannot decode " + join(ff.missing_decoders, ", "));
  if (!blockers.empty()) {
    throw ExitRequest(1, "doctor: this machine cannot train: " + join(blockers, "; "));
  }
  std::cout << "\nthis machine can train: "
            << (gpu ? "on " + std::to_string(gpu_count) + " GPU" + (gpu_count == 1 ? "" : "s")
                    : "on the CPU (" + std::to_string(cores) + " cores)")
            << (mpi.found || !slurm.allocation.empty() ? ", with several workers" : ", one worker")
            << "\n";
}

}  // namespace

void add_system_commands(CLI::App& app) {
  app.add_subcommand("version",
                     "What this build of holo has (LibTorch, CUDA, NCCL, FFmpeg, NVDEC, MPI, "
                     "HDF5) and how to get what is missing")
      ->callback(print_version);
  app.add_subcommand("doctor",
                     "Check this machine (driver, GPUs, NCCL, NVDEC, MPI, SLURM) and say what "
                     "would run where, and why; exit 0 when it can train")
      ->callback(doctor);
}

}  // namespace holo::cli
