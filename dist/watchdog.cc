#include "dist/watchdog.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "core/check.h"
#include "core/error.h"
#include "core/time.h"
#include "dist/world.h"
#include "dist/world_internal.h"

namespace holo::dist {
namespace {

constexpr int kNoticeTag = 7301;

}  // namespace

Watchdog::Watchdog(MPI_Comm comm, WatchdogOptions options) : options_(std::move(options)) {
  HOLO_CHECK(options_.timeout_s > 0, "collective timeout must be positive");
  if (options_.announce_after_s < 0) {
    options_.announce_after_s = std::min(1.0, options_.timeout_s / 4);
  }
  if (!options_.on_timeout) {
    options_.on_timeout = [](const std::string& report) { abort_world(1, report); };
  }
  HOLO_MPI_CHECK(MPI_Comm_dup(comm, &control_));
  HOLO_MPI_CHECK(MPI_Comm_set_errhandler(control_, MPI_ERRORS_RETURN));
  HOLO_MPI_CHECK(MPI_Comm_rank(control_, &rank_));
  HOLO_MPI_CHECK(MPI_Comm_size(control_, &size_));
  talk_ = detail::thread_level() >= MPI_THREAD_MULTIPLE && size_ > 1;
  peers_.resize(size_);
  for (auto& p : peers_) p.newest = -1;
  if (talk_) {
    HOLO_MPI_CHECK(MPI_Irecv(&recv_buffer_, sizeof(Notice), MPI_BYTE, MPI_ANY_SOURCE, kNoticeTag,
                             control_, &recv_request_));
  }
  finalize_hook_ = detail::add_finalize_hook([this] { stop(); });
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  stop();
  detail::remove_finalize_hook(finalize_hook_);
}

void Watchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  int down = 0;
  MPI_Finalized(&down);
  if (down) return;
  if (recv_request_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&recv_request_);
    MPI_Wait(&recv_request_, MPI_STATUS_IGNORE);
  }
  // Notices are a few bytes and leave eagerly; whatever is still queued is of no use now.
  for (auto& s : sends_) {
    if (s.second != MPI_REQUEST_NULL) MPI_Request_free(&s.second);
  }
  sends_.clear();
  if (control_ != MPI_COMM_NULL) MPI_Comm_free(&control_);
}

uint64_t Watchdog::begin(const std::string& name, const std::string& detail) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t seq = next_seq_++;
  in_flight_.emplace(seq, InFlight{name, detail, std::chrono::steady_clock::now()});
  return seq;
}

void Watchdog::end(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mutex_);
  in_flight_.erase(seq);
}

std::vector<int64_t> Watchdog::peer_progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int64_t> out;
  for (const auto& p : peers_) out.push_back(p.newest);
  return out;
}

void Watchdog::drain_notices() {
  for (;;) {
    int flag = 0;
    MPI_Status status;
    if (MPI_Test(&recv_request_, &flag, &status) != MPI_SUCCESS || !flag) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (status.MPI_SOURCE >= 0 && status.MPI_SOURCE < size_) {
        Notice& p = peers_[status.MPI_SOURCE];
        if (recv_buffer_.newest > p.newest) p = recv_buffer_;
      }
    }
    if (MPI_Irecv(&recv_buffer_, sizeof(Notice), MPI_BYTE, MPI_ANY_SOURCE, kNoticeTag, control_,
                  &recv_request_) != MPI_SUCCESS) {
      recv_request_ = MPI_REQUEST_NULL;
      talk_ = false;
      return;
    }
  }
}

void Watchdog::announce(uint64_t newest, uint64_t pending, const std::string& name) {
  // Completed sends give their slots back (a list: pending sends keep their buffer's address).
  for (auto it = sends_.begin(); it != sends_.end();) {
    int flag = 0;
    MPI_Test(&it->second, &flag, MPI_STATUS_IGNORE);
    it = flag ? sends_.erase(it) : std::next(it);
  }
  Notice n;
  n.newest = static_cast<int64_t>(newest);
  n.pending = static_cast<int64_t>(pending);
  std::strncpy(n.name, name.c_str(), sizeof n.name - 1);
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    sends_.emplace_back(n, MPI_REQUEST_NULL);
    if (MPI_Isend(&sends_.back().first, sizeof(Notice), MPI_BYTE, peer, kNoticeTag, control_,
                  &sends_.back().second) != MPI_SUCCESS) {
      sends_.pop_back();
    }
  }
}

std::string Watchdog::report(uint64_t seq, const InFlight& c, double waited) const {
  std::ostringstream out;
  out << "collective " << c.name << " #" << seq;
  if (!c.detail.empty()) out << " (" << c.detail << ")";
  out << " did not complete within " << options_.timeout_s << " s (waited " << waited
      << " s, limit from dist.timeout_s / HOLO_COLLECTIVE_TIMEOUT); ";
  if (!talk_ && size_ > 1) {
    out << "the ranks that did not join are unknown (MPI without MPI_THREAD_MULTIPLE)";
    return out.str();
  }
  std::vector<std::string> absent;
  std::lock_guard<std::mutex> lock(mutex_);
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    const Notice& p = peers_[peer];
    if (p.newest >= static_cast<int64_t>(seq)) continue;
    std::ostringstream a;
    a << peer;
    if (p.newest < 0) {
      a << " (announced no collective)";
    } else {
      a << " (last seen waiting in " << p.name << " #" << p.pending << ")";
    }
    absent.push_back(a.str());
  }
  if (absent.empty()) {
    out << "every rank reached it; the transport itself is stuck";
  } else {
    out << "ranks that did not join: ";
    for (size_t i = 0; i < absent.size(); ++i) out << (i ? ", " : "") << absent[i];
  }
  return out.str();
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto poll = std::chrono::duration<double>(options_.poll_s);
  while (!stopping_) {
    wake_.wait_for(lock, poll, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    if (talk_) drain_notices();
    lock.lock();
    if (in_flight_.empty() || fired_) continue;
    const uint64_t seq = in_flight_.begin()->first;
    const InFlight oldest = in_flight_.begin()->second;
    const uint64_t newest = next_seq_ - 1;
    const double waited = seconds_since(oldest.start);
    lock.unlock();
    if (talk_ && waited >= options_.announce_after_s && newest > announced_) {
      announce(newest, seq, oldest.name);
      announced_ = newest;
    }
    if (waited >= options_.timeout_s) {
      // One more look at the notices that arrived meanwhile, then report.
      if (talk_) drain_notices();
      fired_ = true;
      const std::string text = report(seq, oldest, waited);
      options_.on_timeout(text);
    }
    lock.lock();
  }
}

}  // namespace holo::dist
