#include "dist/mpi_communicator.h"

#include <climits>
#include <sstream>

#include "core/check.h"
#include "core/error.h"
#include "dist/world_internal.h"

namespace holo::dist {
namespace {

/// MPI counts are int: larger tensors go in chunks of this many elements.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

struct MpiType {
  MPI_Datatype type;
  bool via_float;  ///< reduced as float32 (MPI has no 16-bit float type)
};

MpiType mpi_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return {MPI_FLOAT, false};
    case torch::kDouble: return {MPI_DOUBLE, false};
    case torch::kInt: return {MPI_INT32_T, false};
    case torch::kLong: return {MPI_INT64_T, false};
    case torch::kShort: return {MPI_INT16_T, false};
    case torch::kChar: return {MPI_INT8_T, false};
    case torch::kByte: return {MPI_UINT8_T, false};
    case torch::kBool: return {MPI_C_BOOL, false};
    case torch::kHalf:
    case torch::kBFloat16: return {MPI_FLOAT, true};
    default:
      throw UsageError(std::string("MPI communicator: dtype ") + c10::toString(t) +
                       " is not supported");
  }
}

MPI_Op mpi_op(ReduceOp op, torch::ScalarType t) {
  if (t == torch::kBool) {
    // Logical reductions: "sum" and "max" of flags mean any, "min" means all.
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kMax: return MPI_LOR;
      case ReduceOp::kMin: return MPI_LAND;
      case ReduceOp::kAvg: break;
    }
    throw UsageError("all_reduce: avg of a bool tensor is not defined");
  }
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

void check_cpu(const torch::Tensor& t, const char* what) {
  HOLO_CHECK(t.defined(), std::string(what) + ": undefined tensor");
  if (!t.device().is_cpu()) {
    throw UsageError(std::string(what) + ": the MPI communicator takes CPU tensors, got one on " +
                     t.device().str() + " (dist.backend = \"nccl\" or \"auto\" for CUDA)");
  }
}

std::string describe(const torch::Tensor& t) {
  std::ostringstream s;
  s << c10::toString(t.scalar_type()) << " x " << t.numel();
  return s.str();
}

/// The buffer MPI works on: `t` itself when it is contiguous in a dtype MPI reduces, a copy
/// otherwise (copied back when the operation completes).
torch::Tensor work_buffer(const torch::Tensor& t, bool via_float) {
  if (via_float) return t.to(torch::kFloat).contiguous();
  return t.is_contiguous() ? t : t.contiguous();
}

void finish_reduce(torch::Tensor& t, torch::Tensor& buf, ReduceOp op, int size) {
  if (op == ReduceOp::kAvg) buf.div_(size);
  if (!buf.is_same(t)) t.copy_(buf);
}

void check_avg(const torch::Tensor& t, ReduceOp op) {
  if (op == ReduceOp::kAvg && !at::isFloatingType(t.scalar_type())) {
    throw UsageError(std::string("all_reduce: avg needs a floating-point tensor, got ") +
                     c10::toString(t.scalar_type()));
  }
}

/// An MPI_Iallreduce (one request per chunk) and what completes it.
class MpiWork : public Work {
 public:
  MpiWork(torch::Tensor target, torch::Tensor buffer, ReduceOp op, int size,
          CollectiveMonitor* monitor, uint64_t seq)
      : target_(std::move(target)), buffer_(std::move(buffer)), op_(op), size_(size),
        monitor_(monitor), seq_(seq) {}
  ~MpiWork() override {
    if (!done_ && !requests_.empty()) {
      try {
        wait();
      } catch (...) {
        // A destructor must not throw; the watchdog bounds the wait.
      }
    }
    if (!done_ && monitor_) monitor_->end(seq_);
  }
  std::vector<MPI_Request>& requests() { return requests_; }

  bool test() override {
    if (done_) return true;
    int flag = 0;
    HOLO_MPI_CHECK(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &flag,
                               MPI_STATUSES_IGNORE));
    if (flag) complete();
    return done_;
  }
  void wait() override {
    if (done_) return;
    HOLO_MPI_CHECK(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(),
                               MPI_STATUSES_IGNORE));
    complete();
  }

 private:
  void complete() {
    done_ = true;
    if (monitor_) monitor_->end(seq_);
    finish_reduce(target_, buffer_, op_, size_);
  }

  torch::Tensor target_;
  torch::Tensor buffer_;
  ReduceOp op_;
  int size_;
  CollectiveMonitor* monitor_;
  uint64_t seq_;
  std::vector<MPI_Request> requests_;
  bool done_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, double timeout_s) {
  HOLO_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  HOLO_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  HOLO_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  HOLO_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  if (timeout_s > 0) {
    WatchdogOptions w;
    w.timeout_s = timeout_s;
    watchdog_ = std::make_unique<Watchdog>(comm_, w);
  }
  finalize_hook_ = detail::add_finalize_hook([this] { release(); });
}

MpiCommunicator::~MpiCommunicator() {
  detail::remove_finalize_hook(finalize_hook_);
  release();
}

void MpiCommunicator::release() {
  if (watchdog_) watchdog_->stop();
  int down = 0;
  MPI_Finalized(&down);
  if (!down && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

void MpiCommunicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  check_cpu(t, "all_reduce");
  check_avg(t, op);
  const MpiType type = mpi_type(t.scalar_type());
  const MPI_Op mop = mpi_op(op, t.scalar_type());
  torch::Tensor buf = work_buffer(t, type.via_float);
  std::lock_guard<std::mutex> lock(mutex_);
  CollectiveScope scope(watchdog_.get(), std::string("all_reduce/") + to_string(op), describe(t));
  const int64_t n = buf.numel();
  auto* base = static_cast<char*>(buf.data_ptr());
  const size_t elem = buf.element_size();
  for (int64_t off = 0; off < n || (n == 0 && off == 0); off += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, n - off));
    HOLO_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, base + off * elem, count, type.type, mop, comm_));
    if (n == 0) break;
  }
  finish_reduce(t, buf, op, size_);
}

std::shared_ptr<Work> MpiCommunicator::all_reduce_async(torch::Tensor t, ReduceOp op) {
  check_cpu(t, "all_reduce_async");
  check_avg(t, op);
  const MpiType type = mpi_type(t.scalar_type());
  const MPI_Op mop = mpi_op(op, t.scalar_type());
  torch::Tensor buf = work_buffer(t, type.via_float);
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t seq =
      watchdog_ ? watchdog_->begin(std::string("all_reduce_async/") + to_string(op), describe(t))
                : 0;
  auto work = std::make_shared<MpiWork>(t, buf, op, size_, watchdog_.get(), seq);
  const int64_t n = buf.numel();
  auto* base = static_cast<char*>(buf.data_ptr());
  const size_t elem = buf.element_size();
  for (int64_t off = 0; off < n || (n == 0 && off == 0); off += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, n - off));
    MPI_Request r = MPI_REQUEST_NULL;
    HOLO_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, base + off * elem, count, type.type, mop, comm_, &r));
    work->requests().push_back(r);
    if (n == 0) break;
  }
  return work;
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  check_cpu(t, "broadcast");
  if (root < 0 || root >= size_) {
    throw UsageError("broadcast: root " + std::to_string(root) + " is not a rank of a world of " +
                     std::to_string(size_));
  }
  torch::Tensor buf = t.is_contiguous() ? t : t.contiguous();
  std::lock_guard<std::mutex> lock(mutex_);
  CollectiveScope scope(watchdog_.get(), "broadcast", describe(t) + " from rank " + std::to_string(root));
  // Bytes: broadcasting does no arithmetic, so every dtype (16-bit floats included) goes as is.
  const int64_t n = buf.numel() * static_cast<int64_t>(buf.element_size());
  auto* base = static_cast<char*>(buf.data_ptr());
  for (int64_t off = 0; off < n || (n == 0 && off == 0); off += kMaxChunk) {
    const int count = static_cast<int>(std::min(kMaxChunk, n - off));
    HOLO_MPI_CHECK(MPI_Bcast(base + off, count, MPI_BYTE, root, comm_));
    if (n == 0) break;
  }
  if (!buf.is_same(t)) t.copy_(buf);
}

std::vector<torch::Tensor> MpiCommunicator::all_gather(const torch::Tensor& t) {
  check_cpu(t, "all_gather");
  constexpr int kMaxDims = 8;
  if (t.dim() > kMaxDims) {
    throw UsageError("all_gather: at most " + std::to_string(kMaxDims) + " dimensions");
  }
  torch::Tensor buf = t.contiguous();
  std::lock_guard<std::mutex> lock(mutex_);
  // Shapes first: a mismatch is an error on every rank instead of a corrupt result or a hang.
  std::vector<int64_t> mine(kMaxDims + 2, -1);
  mine[0] = static_cast<int64_t>(t.scalar_type());
  mine[1] = t.dim();
  for (int64_t d = 0; d < t.dim(); ++d) mine[2 + d] = t.size(d);
  std::vector<int64_t> all(mine.size() * size_);
  {
    CollectiveScope scope(watchdog_.get(), "all_gather/shape", describe(t));
    HOLO_MPI_CHECK(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_INT64_T,
                                 all.data(), static_cast<int>(mine.size()), MPI_INT64_T, comm_));
  }
  for (int r = 0; r < size_; ++r) {
    if (!std::equal(mine.begin(), mine.end(), all.begin() + r * mine.size())) {
      std::ostringstream s;
      s << "all_gather: rank " << r << " passed a tensor of another shape or dtype than rank "
        << rank_ << " (" << describe(t) << ", sizes " << t.sizes() << ")";
      throw DistError(where_prefix() + s.str());
    }
  }
  std::vector<int64_t> out_shape{size_};
  for (int64_t s : t.sizes()) out_shape.push_back(s);
  torch::Tensor out = torch::empty(out_shape, t.options());
  const int64_t bytes = buf.numel() * static_cast<int64_t>(buf.element_size());
  if (bytes > 0) {
    if (bytes > INT_MAX) throw UsageError("all_gather: tensors of more than 2 GB are not supported");
    CollectiveScope scope(watchdog_.get(), "all_gather", describe(t));
    HOLO_MPI_CHECK(MPI_Allgather(buf.data_ptr(), static_cast<int>(bytes), MPI_BYTE, out.data_ptr(),
                                 static_cast<int>(bytes), MPI_BYTE, comm_));
  }
  return out.unbind(0);
}

void MpiCommunicator::barrier() {
  std::lock_guard<std::mutex> lock(mutex_);
  CollectiveScope scope(watchdog_.get(), "barrier", "");
  HOLO_MPI_CHECK(MPI_Barrier(comm_));
}

}  // namespace holo::dist
