#pragma once
/// Holo's single error channel: one exception hierarchy, and thin check macros that carry the
/// failing call, its error string, the rank and the host. Expected outcomes (end of file, try
/// again) are return values, never exceptions.

#include <stdexcept>
#include <string>

namespace holo {

/// Process identity used in error messages and log prefixes. The distributed runtime sets the
/// rank once it knows it; before that it comes from holo::discover_rank (core/rank.h: the
/// launcher's variables, one precedence for the whole of Holo) or is 0.
struct ProcessIdentity {
  int rank = 0;
  int world_size = 1;
  std::string host;
};
const ProcessIdentity& process_identity();
void set_process_rank(int rank, int world_size);

/// Base of every error Holo throws. `exit_code()` is what the `holo` command exits with.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
  virtual int exit_code() const { return 1; }
};

/// Wrong command-line use: exits 2.
class UsageError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 2; }
};

/// A recipe that cannot run: unknown key, wrong type, value out of range, missing base file,
/// inheritance cycle. The message names the file, line, column and key path. Exits 2.
class RecipeError : public Error {
 public:
  RecipeError(const std::string& file, int line, int column, const std::string& key,
              const std::string& message);
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& key() const { return key_; }
  int exit_code() const override { return 2; }

 private:
  std::string file_;
  int line_;
  int column_;
  std::string key_;
};

/// A file that cannot be read or written, or whose contents are not what they claim to be.
class IoError : public Error {
 public:
  using Error::Error;
};

/// A failed call into a C library (libav, MPI, NCCL, CUDA, HDF5). Carries the call text, the
/// numeric code, the library's error string, and where it happened.
class CallError : public Error {
 public:
  CallError(const std::string& library, const std::string& call, long code,
            const std::string& error_string, const char* file, int line);
  const std::string& library() const { return library_; }
  const std::string& call() const { return call_; }
  long code() const { return code_; }

 private:
  std::string library_;
  std::string call_;
  long code_;
};

/// A collective that did not complete in time, or a peer that failed.
class DistError : public Error {
 public:
  using Error::Error;
};

/// "[rank 3 on host-a] " for messages.
std::string where_prefix();

[[noreturn]] void throw_check_failure(const char* condition, const std::string& message,
                                      const char* file, int line);

}  // namespace holo

/// Invariant check for Holo's own code: throws holo::Error with the condition, the message
/// (streamed arguments are not supported: pass a std::string), the rank and the host.
#define HOLO_CHECK(cond, message)                                          \
  do {                                                                     \
    if (!(cond)) ::holo::throw_check_failure(#cond, (message), __FILE__, __LINE__); \
  } while (0)
