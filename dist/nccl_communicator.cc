// NCCL communicator. Types come from nccl.h and cuda_runtime_api.h; every function is reached
// through a pointer resolved with dlsym (see nccl_communicator.h for why).
#include "dist/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <mpi.h>
#include <nccl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "core/error.h"
#include "core/time.h"
#include "dist/mpi_communicator.h"
#include "dist/world.h"

namespace holo::dist {
namespace {

/// The NCCL and CUDA runtime functions Holo calls, resolved once.
struct Api {
  const char* (*cudaGetErrorString)(cudaError_t);
  cudaError_t (*cudaSetDevice)(int);
  cudaError_t (*cudaStreamCreateWithFlags)(cudaStream_t*, unsigned int);
  cudaError_t (*cudaStreamDestroy)(cudaStream_t);
  cudaError_t (*cudaStreamSynchronize)(cudaStream_t);
  cudaError_t (*cudaStreamWaitEvent)(cudaStream_t, cudaEvent_t, unsigned int);
  cudaError_t (*cudaEventCreateWithFlags)(cudaEvent_t*, unsigned int);
  cudaError_t (*cudaEventDestroy)(cudaEvent_t);
  cudaError_t (*cudaEventRecord)(cudaEvent_t, cudaStream_t);
  cudaError_t (*cudaEventQuery)(cudaEvent_t);
  const char* (*ncclGetErrorString)(ncclResult_t);
  ncclResult_t (*ncclGetUniqueId)(ncclUniqueId*);
  ncclResult_t (*ncclCommInitRank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*ncclCommDestroy)(ncclComm_t);
  ncclResult_t (*ncclCommAbort)(ncclComm_t);
  ncclResult_t (*ncclCommGetAsyncError)(ncclComm_t, ncclResult_t*);
  ncclResult_t (*ncclAllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t,
                                ncclComm_t, cudaStream_t);
  ncclResult_t (*ncclBroadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t,
                                cudaStream_t);
  ncclResult_t (*ncclAllGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t,
                                cudaStream_t);
};

/// The first of `names` this process has loaded already (LibTorch's own CUDA runtime and NCCL,
/// so that one copy of each serves both), else the first that loads.
void* open_first(const std::vector<const char*>& names, std::string& tried) {
  for (const char* n : names) {
    if (void* h = dlopen(n, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) return h;
  }
  for (const char* n : names) {
    if (void* h = dlopen(n, RTLD_NOW | RTLD_GLOBAL)) return h;
    tried += std::string(tried.empty() ? "" : ", ") + n + " (" + dlerror() + ")";
  }
  return nullptr;
}

template <class F>
void resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (fn == nullptr) throw UsageError(std::string("NCCL communicator: symbol ") + name + " not found");
}

const Api& api() {
  static std::once_flag once;
  static Api a;
  static std::string error;
  std::call_once(once, [] {
    std::string tried;
    void* cudart = open_first({"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                               "libcudart.so.11.0"}, tried);
    if (cudart == nullptr) {
      error = "cannot load the CUDA runtime: " + tried;
      return;
    }
    tried.clear();
    void* nccl = open_first({"libnccl.so.2", "libnccl.so"}, tried);
    if (nccl == nullptr) {
      error = "cannot load NCCL: " + tried;
      return;
    }
    try {
      resolve(cudart, "cudaGetErrorString", a.cudaGetErrorString);
      resolve(cudart, "cudaSetDevice", a.cudaSetDevice);
      resolve(cudart, "cudaStreamCreateWithFlags", a.cudaStreamCreateWithFlags);
      resolve(cudart, "cudaStreamDestroy", a.cudaStreamDestroy);
      resolve(cudart, "cudaStreamSynchronize", a.cudaStreamSynchronize);
      resolve(cudart, "cudaStreamWaitEvent", a.cudaStreamWaitEvent);
      resolve(cudart, "cudaEventCreateWithFlags", a.cudaEventCreateWithFlags);
      resolve(cudart, "cudaEventDestroy", a.cudaEventDestroy);
      resolve(cudart, "cudaEventRecord", a.cudaEventRecord);
      resolve(cudart, "cudaEventQuery", a.cudaEventQuery);
      resolve(nccl, "ncclGetErrorString", a.ncclGetErrorString);
      resolve(nccl, "ncclGetUniqueId", a.ncclGetUniqueId);
      resolve(nccl, "ncclCommInitRank", a.ncclCommInitRank);
      resolve(nccl, "ncclCommDestroy", a.ncclCommDestroy);
      resolve(nccl, "ncclCommAbort", a.ncclCommAbort);
      resolve(nccl, "ncclCommGetAsyncError", a.ncclCommGetAsyncError);
      resolve(nccl, "ncclAllReduce", a.ncclAllReduce);
      resolve(nccl, "ncclBroadcast", a.ncclBroadcast);
      resolve(nccl, "ncclAllGather", a.ncclAllGather);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  if (!error.empty()) throw UsageError("NCCL communicator: " + error);
  return a;
}

#define HOLO_CUDART(call)                                                                   \
  do {                                                                                      \
    const cudaError_t holo_rc_ = (call);                                                    \
    if (holo_rc_ != cudaSuccess) {                                                          \
      throw CallError("CUDA", #call, static_cast<long>(holo_rc_),                           \
                      api().cudaGetErrorString(holo_rc_), __FILE__, __LINE__);              \
    }                                                                                       \
  } while (0)

ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return ncclFloat32;
    case torch::kDouble: return ncclFloat64;
    case torch::kHalf: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt: return ncclInt32;
    case torch::kLong: return ncclInt64;
    case torch::kChar: return ncclInt8;
    case torch::kByte:
    case torch::kBool: return ncclUint8;
    default:
      throw UsageError(std::string("NCCL communicator: dtype ") + c10::toString(t) +
                       " is not supported");
  }
}

ncclRedOp_t nccl_op(ReduceOp op, torch::ScalarType t) {
  if (t == torch::kBool) {
    if (op == ReduceOp::kAvg) throw UsageError("all_reduce: avg of a bool tensor is not defined");
    return op == ReduceOp::kMin ? ncclMin : ncclMax;  // all / any
  }
  if (op == ReduceOp::kAvg && !at::isFloatingType(t)) {
    throw UsageError(std::string("all_reduce: avg needs a floating-point tensor, got ") +
                     c10::toString(t));
  }
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

/// RAII for a CUDA event.
class Event {
 public:
  Event() { HOLO_CUDART(api().cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() {
    if (e_) api().cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

class NcclCommunicator;

/// A collective queued on the NCCL stream, complete when its event is.
class NcclWork : public Work {
 public:
  NcclWork(NcclCommunicator* comm, torch::Tensor tensor, CollectiveMonitor* monitor, uint64_t seq,
           std::string name)
      : comm_(comm), tensor_(std::move(tensor)), monitor_(monitor), seq_(seq),
        name_(std::move(name)), start_(std::chrono::steady_clock::now()) {}
  ~NcclWork() override {
    if (!done_ && monitor_) monitor_->end(seq_);
  }
  cudaEvent_t event() const { return done_event_.get(); }
  bool test() override;
  void wait() override;

 private:
  NcclCommunicator* comm_;
  torch::Tensor tensor_;  ///< kept alive until the collective has run
  CollectiveMonitor* monitor_;
  uint64_t seq_;
  std::string name_;
  std::chrono::steady_clock::time_point start_;
  Event done_event_;
  bool done_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(int device, double timeout_s) : device_(device), timeout_s_(timeout_s) {
    const World& w = init_world();
    rank_ = w.rank;
    size_ = w.size;
    HOLO_CUDART(api().cudaSetDevice(device_));
    ready_ = std::make_unique<Event>();
    if (w.mpi) control_ = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, timeout_s);
    ncclUniqueId id;
    if (rank_ == 0) check(api().ncclGetUniqueId(&id), "ncclGetUniqueId(&id)", __FILE__, __LINE__);
    if (control_) {
      auto bytes = torch::from_blob(&id, {static_cast<int64_t>(sizeof id)}, torch::kUInt8);
      control_->broadcast(bytes, 0);
    }
    {
      CollectiveScope scope(monitor(), "ncclCommInitRank", "device " + std::to_string(device_));
      check(api().ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank", __FILE__,
            __LINE__);
    }
    HOLO_CUDART(api().cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    spdlog::debug("NCCL communicator on device {}: rank {} of {}", device_, rank_, size_);
  }

  ~NcclCommunicator() override {
    if (comm_ != nullptr) {
      if (api().cudaStreamSynchronize(stream_) == cudaSuccess) {
        api().ncclCommDestroy(comm_);
      } else {
        api().ncclCommAbort(comm_);
      }
    }
    if (stream_ != nullptr) api().cudaStreamDestroy(stream_);
  }

  /// Throws after aborting the communicator: a failed NCCL call leaves it unusable, and peers
  /// blocked in the same collective are released instead of hanging.
  void check(ncclResult_t rc, const char* call, const char* file, int line) {
    if (rc == ncclSuccess || rc == ncclInProgress) return;
    const std::string text = api().ncclGetErrorString(rc);
    abort_comm();
    throw CallError("NCCL", call, static_cast<long>(rc), text, file, line);
  }

  void abort_comm() {
    if (comm_ != nullptr) {
      api().ncclCommAbort(comm_);
      comm_ = nullptr;
    }
  }

  /// Called while waiting: an asynchronous NCCL error or the timeout aborts and throws.
  void poll_health(const std::string& name, std::chrono::steady_clock::time_point start) {
    HOLO_CHECK(comm_ != nullptr, "NCCL communicator used after it was aborted");
    ncclResult_t async = ncclSuccess;
    check(api().ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError", __FILE__, __LINE__);
    check(async, ("asynchronous error in " + name).c_str(), __FILE__, __LINE__);
    const double waited = seconds_since(start);
    if (timeout_s_ > 0 && waited > timeout_s_) {
      abort_comm();
      throw DistError(where_prefix() + "NCCL collective " + name + " did not complete within " +
                      std::to_string(timeout_s_) + " s; communicator aborted");
    }
  }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    all_reduce_async(t, op)->wait();
  }

  std::shared_ptr<Work> all_reduce_async(torch::Tensor t, ReduceOp op) override {
    check_tensor(t, "all_reduce");
    if (!t.is_contiguous()) {
      // NCCL reduces flat buffers: a contiguous copy is reduced and written back, here and now.
      torch::Tensor flat = t.contiguous();
      all_reduce_async(flat, op)->wait();
      t.copy_(flat);
      return std::make_shared<CompletedWork>();
    }
    const ncclRedOp_t nop = nccl_op(op, t.scalar_type());
    std::lock_guard<std::mutex> lock(mutex_);
    auto work = start(t, std::string("all_reduce/") + to_string(op));
    check(api().ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                              nccl_type(t.scalar_type()), nop, comm_, stream_),
          "ncclAllReduce", __FILE__, __LINE__);
    return finish(work);
  }

  void broadcast(torch::Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    if (root < 0 || root >= size_) throw UsageError("broadcast: root " + std::to_string(root) + " out of range");
    if (!t.is_contiguous()) {
      torch::Tensor flat = t.contiguous();
      broadcast(flat, root);
      t.copy_(flat);
      return;
    }
    std::shared_ptr<NcclWork> work;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      work = start(t, "broadcast");
      check(api().ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                nccl_type(t.scalar_type()), root, comm_, stream_),
            "ncclBroadcast", __FILE__, __LINE__);
      finish(work);
    }
    work->wait();
  }

  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    check_tensor(t, "all_gather");
    torch::Tensor in = t.contiguous();
    std::vector<int64_t> shape{size_};
    for (int64_t s : t.sizes()) shape.push_back(s);
    torch::Tensor out = torch::empty(shape, t.options());
    std::shared_ptr<NcclWork> work;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      work = start(out, "all_gather");
      check(api().ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                                nccl_type(t.scalar_type()), comm_, stream_),
            "ncclAllGather", __FILE__, __LINE__);
      finish(work);
    }
    work->wait();
    return out.unbind(0);
  }

  void barrier() override {
    HOLO_CUDART(api().cudaStreamSynchronize(stream_));
    if (control_) control_->barrier();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  CollectiveMonitor* monitor() const { return control_ ? control_->monitor() : nullptr; }

 private:
  void check_tensor(const torch::Tensor& t, const char* what) const {
    HOLO_CHECK(t.defined(), std::string(what) + ": undefined tensor");
    if (!t.is_cuda() || t.device().index() != device_) {
      throw UsageError(std::string(what) + ": the NCCL communicator of device cuda:" +
                       std::to_string(device_) + " got a tensor on " + t.device().str());
    }
  }

  /// Orders the NCCL stream after the work queued so far on the default stream.
  std::shared_ptr<NcclWork> start(const torch::Tensor& t, const std::string& name) {
    HOLO_CHECK(comm_ != nullptr, "NCCL communicator used after it was aborted");
    HOLO_CUDART(api().cudaSetDevice(device_));
    HOLO_CUDART(api().cudaEventRecord(ready_->get(), cudaStreamLegacy));
    HOLO_CUDART(api().cudaStreamWaitEvent(stream_, ready_->get(), 0));
    CollectiveMonitor* m = monitor();
    const uint64_t seq = m ? m->begin(name, c10::toString(t.scalar_type()) + std::string(" x ") +
                                               std::to_string(t.numel()))
                           : 0;
    return std::make_shared<NcclWork>(this, t, m, seq, name);
  }

  std::shared_ptr<Work> finish(const std::shared_ptr<NcclWork>& work) {
    HOLO_CUDART(api().cudaEventRecord(work->event(), stream_));
    return work;
  }

  int device_;
  double timeout_s_;
  int rank_ = 0;
  int size_ = 1;
  std::unique_ptr<MpiCommunicator> control_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Event> ready_;  ///< created once the device is current
  std::mutex mutex_;
};

bool NcclWork::test() {
  if (done_) return true;
  const cudaError_t rc = api().cudaEventQuery(done_event_.get());
  if (rc == cudaErrorNotReady) {
    comm_->poll_health(name_, start_);
    return false;
  }
  HOLO_CUDART(rc);
  // Work queued on the default stream from now on sees the result.
  HOLO_CUDART(api().cudaStreamWaitEvent(cudaStreamLegacy, done_event_.get(), 0));
  done_ = true;
  if (monitor_) monitor_->end(seq_);
  return true;
}

void NcclWork::wait() {
  while (!test()) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(int device, double timeout_s) {
  return std::make_shared<NcclCommunicator>(device, timeout_s);
}

std::string nccl_load_error() {
  try {
    api();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

}  // namespace holo::dist
