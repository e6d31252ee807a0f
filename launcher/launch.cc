#include "launcher/launch.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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
    std::string pending[2];
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int open_fds = 2;
    auto emit = [&](int which, const std::string& line) {
      bool to_err = which == 1;
      const std::string text = prefix_rank(plan.via, line, &to_err);
      // Lines mpirun tags keep the stream they came from; mpirun's own go where it wrote them.
      (to_err ? std::cerr : std::cout) << text << '\n';
      (to_err ? std::cerr : std::cout).flush();
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
          if (!pending[i].empty()) emit(i, pending[i]);
          pending[i].clear();
          close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
          continue;
        }
        pending[i].append(buf, static_cast<size_t>(n));
        size_t start = 0, nl;
        while ((nl = pending[i].find('\n', start)) != std::string::npos) {
          emit(i, pending[i].substr(start, nl - start));
          start = nl + 1;
        }
        pending[i].erase(0, start);
      }
    }
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
