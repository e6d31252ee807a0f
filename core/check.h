#pragma once
/// Check macros for the C libraries Holo calls. Each expands where it is used, so it needs that
/// library's header included first; core itself links none of them.
///
///   HOLO_AV_CHECK(avformat_open_input(&ctx, path, nullptr, nullptr));   // libav*: < 0 fails
///   HOLO_MPI_CHECK(MPI_Allreduce(...));                                 // != MPI_SUCCESS
///   HOLO_H5_CHECK(H5Dwrite(...));                                       // < 0 fails
///   HOLO_CUDA_CHECK(cudaStreamSynchronize(stream));                     // != cudaSuccess
///   HOLO_NCCL_CHECK(ncclAllReduce(...));                                // != ncclSuccess
///
/// Each throws holo::CallError naming the call, its code and error string, rank and host.

#include "core/error.h"

#define HOLO_AV_CHECK(call)                                                        \
  ([&]() -> int {                                                                  \
    const int holo_rc_ = (call);                                                   \
    if (holo_rc_ < 0) {                                                            \
      char holo_buf_[256] = {0};                                                   \
      av_strerror(holo_rc_, holo_buf_, sizeof holo_buf_);                          \
      throw ::holo::CallError("libav", #call, holo_rc_, holo_buf_, __FILE__, __LINE__); \
    }                                                                              \
    return holo_rc_;                                                               \
  }())

#define HOLO_MPI_CHECK(call)                                                       \
  do {                                                                             \
    const int holo_rc_ = (call);                                                   \
    if (holo_rc_ != MPI_SUCCESS) {                                                 \
      char holo_buf_[MPI_MAX_ERROR_STRING] = {0};                                  \
      int holo_len_ = 0;                                                           \
      MPI_Error_string(holo_rc_, holo_buf_, &holo_len_);                           \
      throw ::holo::CallError("MPI", #call, holo_rc_, holo_buf_, __FILE__, __LINE__); \
    }                                                                              \
  } while (0)

/// HDF5 reports details on its error stack; the macro keeps the innermost message.
#define HOLO_H5_CHECK(call)                                                        \
  ([&]() {                                                                         \
    const auto holo_rc_ = (call);                                                  \
    if (holo_rc_ < 0) {                                                            \
      std::string holo_msg_;                                                       \
      H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD,                                     \
               [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {        \
                 if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc; \
                 return 0;                                                         \
               },                                                                  \
               &holo_msg_);                                                        \
      H5Eclear2(H5E_DEFAULT);                                                      \
      throw ::holo::CallError("HDF5", #call, static_cast<long>(holo_rc_),          \
                              holo_msg_.empty() ? "HDF5 call failed" : holo_msg_,  \
                              __FILE__, __LINE__);                                 \
    }                                                                              \
    return holo_rc_;                                                               \
  }())

#define HOLO_CUDA_CHECK(call)                                                      \
  do {                                                                             \
    const cudaError_t holo_rc_ = (call);                                           \
    if (holo_rc_ != cudaSuccess) {                                                 \
      throw ::holo::CallError("CUDA", #call, static_cast<long>(holo_rc_),          \
                              cudaGetErrorString(holo_rc_), __FILE__, __LINE__);   \
    }                                                                              \
  } while (0)

/// Plain NCCL check. A communicator must be aborted before the error propagates; the NCCL
/// communicator does that in its own wrapper around this macro.
#define HOLO_NCCL_CHECK(call)                                                      \
  do {                                                                             \
    const ncclResult_t holo_rc_ = (call);                                          \
    if (holo_rc_ != ncclSuccess && holo_rc_ != ncclInProgress) {                   \
      throw ::holo::CallError("NCCL", #call, static_cast<long>(holo_rc_),          \
                              ncclGetErrorString(holo_rc_), __FILE__, __LINE__);   \
    }                                                                              \
  } while (0)
