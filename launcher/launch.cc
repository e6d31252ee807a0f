#include "launcher/launch.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <regex>
#include <thread>

#include "core/error.h"

extern char** environ;

namespace holo::launch {
namespace {

/// Variables the workers need on every host: Holo's knobs, threading, NCCL and CUDA settings,
/// and the paths that find libraries and programs.
bool passed_to_workers(const std::string& name) {
  for (const char* prefix : {"HOLO_", "OMP_", "MKL_", "NCCL_", "UCX_"}) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return name == "CUDA_VISIBLE_DEVICES" || name == "LD_LIBRARY_PATH" || name == "PATH";
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

/// "[rank R] text", unless the worker's log line already names its rank.
std::string with_rank(const std::string& rank, const std::string& text) {
  const std::string tag = "[rank " + rank + "]";
  if (text.find(tag) != std::string::npos) return text;
  return tag + " " + text;
}

volatile sig_atomic_t g_child = 0;

void forward_signal(int sig) {
  if (g_child > 0) kill(static_cast<pid_t>(g_child), sig);
}

}  // namespace

Machine this_machine() {
  Machine m;
  m.root = geteuid() == 0;
  m.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const char* job = std::getenv("SLURM_JOB_ID");
  m.in_slurm = job != nullptr && *job != '\0';
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string name = kv.substr(0, eq);
    if (passed_to_workers(name)) m.env_names.push_back(name);
  }
  return m;
}

LaunchPlan plan_launch(const LaunchOptions& o, const Machine& m) {
  if (o.np < 1) throw UsageError("launch: --np must be at least 1, got " + std::to_string(o.np));
  if (o.holo_binary.empty()) throw UsageError("launch: the holo binary is unknown");
  if (!o.hosts.empty() && !o.hostfile.empty()) {
    throw UsageError("launch: give --hosts or --hostfile, not both");
  }
  if (!o.launch_agent.empty() && o.via != "auto" && o.via != "mpirun") {
    throw UsageError("launch: --launch-agent is mpirun's remote shell; it does not apply to --via " + o.via);
  }
  LaunchPlan plan;
  plan.via = o.via;
  if (plan.via == "auto") {
    if (m.in_slurm) {
      plan.via = "srun";
    } else if (o.np == 1 && o.hosts.empty() && o.hostfile.empty()) {
      plan.via = "direct";
    } else {
      plan.via = "mpirun";
    }
  }
  std::vector<std::string> worker{o.holo_binary};
  worker.insert(worker.end(), o.command.begin(), o.command.end());
  worker.insert(worker.end(), o.args.begin(), o.args.end());
  auto& a = plan.argv;
  if (plan.via == "direct") {
    if (o.np != 1 || !o.hosts.empty() || !o.hostfile.empty()) {
      throw UsageError("launch: direct start runs one worker on this host");
    }
    a = worker;
  } else if (plan.via == "mpirun") {
    a = {"mpirun", "-np", std::to_string(o.np)};
    if (m.root) a.push_back("--allow-run-as-root");
    if (o.np > m.cores && o.hosts.empty() && o.hostfile.empty()) a.push_back("--oversubscribe");
    // Workers set their own threads (HOLO_NUM_THREADS); pinning them all to one core each by
    // default would serialise LibTorch's intra-op threads.
    a.insert(a.end(), {"--bind-to", "none", "--tag-output"});
    if (!o.hosts.empty()) a.insert(a.end(), {"--host", join(o.hosts, ",")});
    if (!o.hostfile.empty()) a.insert(a.end(), {"--hostfile", o.hostfile});
    if (!o.launch_agent.empty()) a.insert(a.end(), {"--mca", "plm_rsh_agent", o.launch_agent});
    for (const auto& name : m.env_names) a.insert(a.end(), {"-x", name});
    a.insert(a.end(), worker.begin(), worker.end());
  } else if (plan.via == "srun") {
    if (!m.in_slurm) throw UsageError("launch: srun needs a SLURM allocation (SLURM_JOB_ID unset)");
    // --kill-on-bad-exit: a worker that fails ends the step instead of leaving peers waiting.
    // --mpi: the PMI plugin through which the workers' MPI finds its peers (as in the batch
    // scripts of `holo submit`); without it OpenMPI's workers cannot initialise under srun.
    a = {"srun", "--mpi=" + o.srun_mpi, "--ntasks=" + std::to_string(o.np), "--kill-on-bad-exit=1", "--label"};
    if (!o.hosts.empty()) a.push_back("--nodelist=" + join(o.hosts, ","));
    a.insert(a.end(), worker.begin(), worker.end());
  } else {
    throw UsageError("launch: --via must be auto, mpirun, srun or direct, got '" + o.via + "'");
  }
  return plan;
}

std::string to_command_line(const LaunchPlan& plan) {
  std::string out;
  for (const auto& arg : plan.argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !arg.empty() && arg.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
        std::string::npos;
    if (plain) {
      out += arg;
    } else {
      out += '\'';
      for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

std::string prefix_rank(const std::string& via, const std::string& line, bool* is_stderr) {
  if (is_stderr) *is_stderr = false;
  std::smatch m;
  if (via == "mpirun") {
    static const std::regex tagged(R"(^\[\d+,(\d+)\]<(stdout|stderr)>:(.*)$)");
    if (std::regex_match(line, m, tagged)) {
      if (is_stderr) *is_stderr = m[2] == "stderr";
      return with_rank(m[1].str(), m[3].str());
    }
  } else if (via == "srun") {
    static const std::regex labelled(R"(^\s*(\d+): (.*)$)");
    if (std::regex_match(line, m, labelled)) return with_rank(m[1].str(), m[2].str());
  }
  return line;
}

namespace {

/// Length of an mpirun tag ("[1,3]<stderr>:") at `i` of `s`: > 0 a tag (its rank and stream set),
/// 0 not a tag, -1 maybe a tag that `s` ends inside of.
int tag_at(const std::string& s, size_t i, std::string* rank, bool* err) {
  size_t k = i;
  auto need = [&](char c) { return k < s.size() ? (s[k] == c ? (++k, 1) : 0) : -1; };
  auto digits = [&](std::string* out) {
    const size_t start = k;
    while (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) ++k;
    if (k == s.size()) return -1;
    if (k == start) return 0;
    if (out) *out = s.substr(start, k - start);
    return 1;
  };
  int r;
  if ((r = need('[')) <= 0) return r;
  if ((r = digits(nullptr)) <= 0) return r;
  if ((r = need(',')) <= 0) return r;
  if ((r = digits(rank)) <= 0) return r;
  if ((r = need(']')) <= 0) return r;
  if ((r = need('<')) <= 0) return r;
  for (const std::string word : {"stdout", "stderr"}) {
    const std::string have = s.substr(k, word.size());
    if (have == word) {
      k += word.size();
      *err = word == "stderr";
      if ((r = need('>')) <= 0) return r;
      if ((r = need(':')) <= 0) return r;
      return static_cast<int>(k - i);
    }
    if (word.compare(0, have.size(), have) == 0 && have.size() < word.size() && k + have.size() == s.size()) return -1;
  }
  return 0;
}

}  // namespace

RelayedLine OutputRelay::line_of(const Source& s, const std::string& text) const {
  if (s.rank.empty()) return {s.err, text};
  return {s.err, with_rank(s.rank, text)};
}

void OutputRelay::append(const Source& to, const std::string& text, std::vector<RelayedLine>& out) {
  auto it = std::find_if(pending_.begin(), pending_.end(), [&](const auto& p) {
    return !(p.first < to) && !(to < p.first);
  });
  if (it == pending_.end()) {
    pending_.emplace_back(to, "");
    it = pending_.end() - 1;
  }
  it->second += text;
}

std::vector<RelayedLine> OutputRelay::feed(int stream, const std::string& bytes) {
  std::vector<RelayedLine> out;
  std::string data = unparsed_[stream] + bytes;
  unparsed_[stream].clear();
  Source& cur = current_[stream];
  size_t pos = 0;
  // Gives the text up to and including each newline to the source it belongs to.
  auto take = [&](const std::string& text) {
    size_t start = 0, nl;
    while ((nl = text.find('\n', start)) != std::string::npos) {
      append(cur, text.substr(start, nl - start), out);
      auto it = std::find_if(pending_.begin(), pending_.end(), [&](const auto& p) {
        return !(p.first < cur) && !(cur < p.first);
      });
      out.push_back(line_of(cur, it->second));
      pending_.erase(it);
      // Each line a worker writes is tagged again; untagged text is the launcher's own.
      if (via_ == "mpirun") cur = Source{"", stream == 1};
      start = nl + 1;
    }
    if (start < text.size()) append(cur, text.substr(start), out);
  };
  if (cur.rank.empty() && via_ != "mpirun") cur.err = stream == 1;
  if (via_ != "mpirun") {
    // srun labels whole lines; direct runs are one worker.
    std::string all = data;
    size_t start = 0, nl;
    while ((nl = all.find('\n', start)) != std::string::npos) {
      bool to_err = stream == 1;
      std::string text = prefix_rank(via_, unparsed_line_[stream] + all.substr(start, nl - start), &to_err);
      unparsed_line_[stream].clear();
      out.push_back({stream == 1, text});
      start = nl + 1;
    }
    unparsed_line_[stream] += all.substr(start);
    return out;
  }
  if (cur.rank.empty()) cur.err = stream == 1;
  while (pos < data.size()) {
    const size_t bracket = data.find('[', pos);
    if (bracket == std::string::npos) {
      take(data.substr(pos));
      break;
    }
    take(data.substr(pos, bracket - pos));
    std::string rank;
    bool err = false;
    const int n = tag_at(data, bracket, &rank, &err);
    if (n < 0) {  // the chunk ends inside what may be a tag
      unparsed_[stream] = data.substr(bracket);
      break;
    }
    if (n == 0) {
      take("[");
      pos = bracket + 1;
      continue;
    }
    cur = Source{rank, err};
    pos = bracket + static_cast<size_t>(n);
  }
  return out;
}

std::vector<RelayedLine> OutputRelay::finish() {
  std::vector<RelayedLine> out;
  for (int stream = 0; stream < 2; ++stream) {
    if (!unparsed_[stream].empty()) {
      const auto more = feed(stream, "");  // nothing more will come: the bytes are text
      out.insert(out.end(), more.begin(), more.end());
      if (!unparsed_[stream].empty()) append(current_[stream], unparsed_[stream], out);
      unparsed_[stream].clear();
    }
    if (!unparsed_line_[stream].empty()) {
      bool to_err = stream == 1;
      out.push_back({stream == 1, prefix_rank(via_, unparsed_line_[stream], &to_err)});
      unparsed_line_[stream].clear();
    }
  }
  for (const auto& [source, text] : pending_) out.push_back(line_of(source, text));
  pending_.clear();
  return out;
}

std::string self_executable() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw Error("cannot read /proc/self/exe");
  buf[n] = '\0';
  return buf;
}

int run_launch(const LaunchPlan& plan) {
  const bool relay = plan.via != "direct";
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (relay && (pipe(out_pipe) != 0 || pipe(err_pipe) != 0)) {
    throw Error(std::string("launch: pipe: ") + std::strerror(errno));
  }
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = fork();
  if (pid < 0) throw Error(std::string("launch: fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (relay) {
      dup2(out_pipe[1], STDOUT_FILENO);
      dup2(err_pipe[1], STDERR_FILENO);
      close(out_pipe[0]);
      close(out_pipe[1]);
      close(err_pipe[0]);
      close(err_pipe[1]);
    }
    std::vector<char*> argv;
    for (const auto& s : plan.argv) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "holo: error: launch: cannot run %s: %s\n", argv[0], std::strerror(errno));
    std::_Exit(127);
  }
  g_child = pid;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  struct sigaction old[4];
  const int sigs[4] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
  for (int i = 0; i < 4; ++i) sigaction(sigs[i], &sa, &old[i]);

  if (relay) {
    close(out_pipe[1]);
    close(err_pipe[1]);
    OutputRelay relay_lines(plan.via);
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int open_fds = 2;
    // Lines mpirun tags keep the stream they came from; mpirun's own go where it wrote them.
    auto emit = [&](const std::vector<RelayedLine>& lines) {
      for (const auto& l : lines) {
        (l.to_stderr ? std::cerr : std::cout) << l.text << '\n';
        (l.to_stderr ? std::cerr : std::cout).flush();
      }
    };
    while (open_fds > 0) {
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[65536];
        const ssize_t n = read(fds[i].fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
          continue;
        }
        emit(relay_lines.feed(i, std::string(buf, static_cast<size_t>(n))));
      }
    }
    emit(relay_lines.finish());
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  for (int i = 0; i < 4; ++i) sigaction(sigs[i], &old[i], nullptr);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace holo::launch
