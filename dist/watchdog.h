#pragma once
/// The collective watchdog: fails fast instead of hanging when a peer dies or never arrives.
///
/// Every collective a communicator issues is numbered (the same number on every rank, since all
/// ranks issue the same collectives in the same order) and registered with the watchdog while it
/// is in flight. A thread checks the oldest one every `poll_s`. Once a collective has waited
/// `announce_after_s`, the rank tells its peers, over a control communicator of its own, the
/// newest collective it has entered; ranks that are stuck with it do the same. When a collective
/// has waited `timeout_s`, the watchdog names it and the ranks that have not announced reaching
/// it, then ends the job (abort_world, exit code 1). Collectives that finish quickly send nothing
/// on the control plane.
///
/// Naming the absent ranks needs MPI_THREAD_MULTIPLE (the thread receives the peers' notices
/// while the main thread sits in the collective); with less, the report says the ranks are
/// unknown and the job still ends on time.

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace holo::dist {

/// What a communicator reports to about its collectives.
class CollectiveMonitor {
 public:
  virtual ~CollectiveMonitor() = default;
  /// A collective started; returns its sequence number.
  virtual uint64_t begin(const std::string& name, const std::string& detail) = 0;
  /// The collective `seq` completed.
  virtual void end(uint64_t seq) = 0;
};

struct WatchdogOptions {
  double timeout_s = 60.0;         ///< a collective older than this ends the job
  double poll_s = 0.05;            ///< how often the thread looks
  double announce_after_s = -1.0;  ///< < 0: min(1 s, timeout_s / 4)
  /// Called with the report when a collective times out; default: abort_world(1, report).
  std::function<void(const std::string&)> on_timeout;
};

class Watchdog : public CollectiveMonitor {
 public:
  /// Collective over `comm`'s ranks (it duplicates `comm` for its notices).
  Watchdog(MPI_Comm comm, WatchdogOptions options);
  ~Watchdog() override;
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  uint64_t begin(const std::string& name, const std::string& detail) override;
  void end(uint64_t seq) override;

  /// Stops the thread and frees the control communicator; called before MPI_Finalize.
  void stop();

  /// Newest collective number each peer has announced (-1: none), for tests and reports.
  std::vector<int64_t> peer_progress() const;

 private:
  struct InFlight {
    std::string name;
    std::string detail;
    std::chrono::steady_clock::time_point start;
  };
  /// Wire format of a notice.
  struct Notice {
    int64_t newest = 0;   ///< newest collective entered
    int64_t pending = 0;  ///< oldest still in flight
    char name[32] = {0};  ///< its name
  };

  void loop();
  void drain_notices();
  void announce(uint64_t newest, uint64_t pending, const std::string& name);
  std::string report(uint64_t seq, const InFlight& c, double waited) const;

  WatchdogOptions options_;
  MPI_Comm control_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  bool talk_ = false;  ///< MPI_THREAD_MULTIPLE: the thread may call MPI
  int finalize_hook_ = -1;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  uint64_t next_seq_ = 1;
  std::map<uint64_t, InFlight> in_flight_;

  // Owned by the thread.
  MPI_Request recv_request_ = MPI_REQUEST_NULL;
  Notice recv_buffer_;
  std::vector<Notice> peers_;  ///< last notice of each rank
  std::list<std::pair<Notice, MPI_Request>> sends_;
  uint64_t announced_ = 0;
  bool fired_ = false;

  std::thread thread_;
};

/// Registers a collective with a monitor for the scope's lifetime (no-op for nullptr).
class CollectiveScope {
 public:
  CollectiveScope(CollectiveMonitor* monitor, const std::string& name, const std::string& detail)
      : monitor_(monitor), seq_(monitor ? monitor->begin(name, detail) : 0) {}
  ~CollectiveScope() {
    if (monitor_) monitor_->end(seq_);
  }
  CollectiveScope(const CollectiveScope&) = delete;
  CollectiveScope& operator=(const CollectiveScope&) = delete;

 private:
  CollectiveMonitor* monitor_;
  uint64_t seq_;
};

}  // namespace holo::dist
