#include "slurm/scheduler.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/shell.h"

extern char** environ;

namespace holo::slurm {
namespace {

/// Pipe ends closed on scope exit.
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (::pipe2(fd, O_CLOEXEC) != 0) throw IoError(std::string("pipe: ") + std::strerror(errno));
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (fd[0] >= 0) ::close(fd[0]);
    fd[0] = -1;
  }
  void close_write() {
    if (fd[1] >= 0) ::close(fd[1]);
    fd[1] = -1;
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
};

/// posix_spawn file actions, destroyed on scope exit.
struct FileActions {
  posix_spawn_file_actions_t a;
  FileActions() { posix_spawn_file_actions_init(&a); }
  ~FileActions() { posix_spawn_file_actions_destroy(&a); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
};

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string describe_failure(const std::string& program, const ProgramResult& r) {
  std::string msg = trim(r.err);
  if (msg.empty()) msg = trim(r.out);
  return program + " failed (exit code " + std::to_string(r.exit_code) + ")" +
         (msg.empty() ? "" : ": " + msg);
}

/// Key=Value fields of `scontrol show job -o` (one line). Values of the fields read here hold no
/// spaces; fields whose values may (Command, WorkDir, Comment) are not used.
std::map<std::string, std::string> scontrol_fields(const std::string& line) {
  std::map<std::string, std::string> out;
  std::istringstream in(line);
  for (std::string tok; in >> tok;) {
    const size_t eq = tok.find('=');
    if (eq != std::string::npos && eq > 0) out.emplace(tok.substr(0, eq), tok.substr(eq + 1));
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) out.push_back(part);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

}  // namespace

ProgramResult run_program(const std::vector<std::string>& argv) {
  HOLO_CHECK(!argv.empty(), "run_program needs a program");
  Pipe out, err;
  FileActions actions;
  posix_spawn_file_actions_addopen(&actions.a, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions.a, out.fd[1], 1);
  posix_spawn_file_actions_adddup2(&actions.a, err.fd[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0].c_str(), &actions.a, nullptr, args.data(), environ);
  if (rc != 0) {
    throw IoError("cannot run '" + argv[0] + "': " + std::strerror(rc) +
                  (rc == ENOENT ? " (is SLURM's client installed and on PATH?)" : ""));
  }
  out.close_write();
  err.close_write();

  ProgramResult r;
  std::array<pollfd, 2> fds = {pollfd{out.fd[0], POLLIN, 0}, pollfd{err.fd[0], POLLIN, 0}};
  std::array<std::string*, 2> sinks = {&r.out, &r.err};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // end of stream; the Pipe closes it
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw IoError("waitpid for '" + argv[0] + "': " + std::strerror(errno));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

void check_job_id(const std::string& id, const std::string& where) {
  if (id.empty() || id.size() > 20 ||
      !std::all_of(id.begin(), id.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
    throw UsageError(where + ": '" + id + "' is not a SLURM job id");
  }
}

std::string submit_script(const std::string& script) {
  const ProgramResult r = run_program({"sbatch", "--parsable", script});
  if (r.exit_code != 0) throw Error(describe_failure("sbatch", r));
  // --parsable prints "<id>" or "<id>;<cluster>".
  std::string id = trim(r.out);
  id = id.substr(0, id.find(';'));
  check_job_id(id, "sbatch output '" + trim(r.out) + "'");
  return id;
}

bool JobInfo::active() const {
  static const char* kFinal[] = {"COMPLETED", "FAILED",    "CANCELLED", "TIMEOUT",
                                 "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                                 "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"};
  if (state.empty()) return false;
  for (const char* f : kFinal) {
    if (state.compare(0, std::strlen(f), f) == 0) return false;  // "CANCELLED by 0" too
  }
  return true;
}

JobInfo query_job(const std::string& id) {
  check_job_id(id, "job id");
  JobInfo info;
  info.id = id;

  // Live state: squeue lists pending, running and completing jobs.
  const ProgramResult q = run_program({"squeue", "-h", "-j", id, "-o", "%T|%r|%M"});
  if (q.exit_code == 0 && !trim(q.out).empty()) {
    const auto f = split(trim(q.out), '|');
    if (f.size() >= 3) {
      info.state = f[0];
      info.reason = f[1];
      info.elapsed = f[2];
      info.source = "squeue";
    }
  }
  // Restarts and exit code: scontrol, while the controller still holds the job record.
  const ProgramResult c = run_program({"scontrol", "show", "job", "-o", id});
  if (c.exit_code == 0 && !trim(c.out).empty()) {
    auto f = scontrol_fields(trim(c.out));
    if (info.state.empty()) {
      info.state = f["JobState"];
      info.reason = f["Reason"];
      info.elapsed = f["RunTime"];
      info.source = "scontrol";
    }
    if (!f["Restarts"].empty()) info.restarts = std::stoll(f["Restarts"]);
    info.exit_code = f["ExitCode"];
  }
  if (!info.state.empty()) return info;

  // Older jobs: the accounting database, when the cluster has one.
  const ProgramResult a =
      run_program({"sacct", "-j", id, "-X", "-n", "-P", "-o", "State,ExitCode,Elapsed,Reason"});
  const std::string line = trim(a.out.substr(0, a.out.find('\n')));
  if (a.exit_code == 0 && !line.empty()) {
    const auto f = split(line, '|');
    info.state = f.size() > 0 ? f[0] : "";
    info.exit_code = f.size() > 1 ? f[1] : "";
    info.elapsed = f.size() > 2 ? f[2] : "";
    info.reason = f.size() > 3 ? f[3] : "";
    info.source = "sacct";
    return info;
  }
  info.note = "the controller no longer holds job " + id +
              " (it ended more than MinJobAge ago, or was never submitted to this cluster)";
  const std::string acct_err = trim(a.err.empty() ? a.out : a.err);
  if (a.exit_code != 0 || !acct_err.empty()) {
    info.note += " and accounting cannot say: " + (acct_err.empty() ? "sacct failed" : acct_err);
  } else {
    info.note += " and accounting has no record of it";
  }
  return info;
}

void cancel_job(const std::string& id, const std::string& signal) {
  check_job_id(id, "job id");
  std::vector<std::string> argv = {"scancel"};
  if (!signal.empty()) {
    if (!std::all_of(signal.begin(), signal.end(), [](unsigned char c) { return std::isalnum(c) != 0; })) {
      throw UsageError("'" + signal + "' is not a signal name");
    }
    argv.push_back("--signal=" + signal);
    argv.push_back("--batch");
  }
  argv.push_back(id);
  const ProgramResult r = run_program(argv);
  // scancel exits 0 with a message on stderr for jobs that are already gone; report it.
  if (r.exit_code != 0 || !trim(r.err).empty()) throw Error(describe_failure("scancel", r));
}

std::optional<PartitionNodes> partition_nodes(const std::string& partition) {
  if (partition.find(',') != std::string::npos) return std::nullopt;
  std::vector<std::string> argv{"sinfo", "-h", "-N", "-o", "%N|%P|%T|%E"};
  if (!partition.empty()) argv.insert(argv.end(), {"-p", partition});
  ProgramResult r;
  try {
    r = run_program(argv);
  } catch (const Error&) {
    return std::nullopt;
  }
  if (r.exit_code != 0) return std::nullopt;
  PartitionNodes out;
  out.partition = partition;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string x; std::getline(fields, x, '|');) f.push_back(x);
    if (f.size() < 3) continue;
    std::string part = f[1];
    const bool is_default = !part.empty() && part.back() == '*';
    if (is_default) part.pop_back();
    // Without a partition, the job goes to the default one.
    if (partition.empty() && !is_default) continue;
    out.partition = part;
    ++out.total;
    // sinfo's %T: a base state ("idle", "down", "drained", ...) and flags; '*' marks a node
    // that does not respond.
    const std::string state = f[2];
    std::string base;
    for (char c : state) {
      if (!std::isalpha(static_cast<unsigned char>(c)) && c != '_') break;
      base += c;
    }
    const bool bad = state.find('*') != std::string::npos || base == "down" || base == "drained" ||
                     base == "draining" || base == "drain" || base == "fail" || base == "failing" ||
                     base == "future" || base == "inval" || base == "unknown";
    if (bad) {
      const std::string reason = f.size() > 3 && !f[3].empty() && f[3] != "none" ? ": " + f[3] : "";
      out.unusable.push_back(f[0] + " (" + state + reason + ")");
    } else {
      out.usable.push_back(f[0]);
    }
  }
  if (out.total == 0) return std::nullopt;
  return out;
}

ClientProbe probe_client(int timeout_s) {
  ClientProbe s;
  if (const char* job = std::getenv("SLURM_JOB_ID"); job != nullptr && *job != '\0')
    s.allocation = job;
  const std::string sinfo = find_on_path("sinfo"), sbatch = find_on_path("sbatch");
  if (sinfo.empty() || sbatch.empty()) {
    s.seen = std::string(sinfo.empty() ? "sinfo" : "") +
             (sinfo.empty() && sbatch.empty() ? " and " : "") +
             (sbatch.empty() ? "sbatch" : "") + " not on PATH";
    s.fix =
        "the SLURM client commands (Debian: slurm-client) configured for the cluster's controller";
    s.why_not = s.seen;
    return s;
  }
  const ShellRun r = run_shell_for(shell_quote(sinfo) + " -h -o %P", timeout_s);
  if (r.code == 0) {
    std::string partitions;
    std::istringstream in(r.out);
    for (std::string p; std::getline(in, p);) {
      if (!p.empty()) partitions += (partitions.empty() ? "" : ", ") + p;
    }
    s.reachable = true;
    s.seen = sinfo + ", " + sbatch + "; the controller answers (partitions: " +
             (partitions.empty() ? std::string("none") : partitions) + ")";
  } else {
    // The last non-empty line of sinfo's output: where its verdict usually is.
    std::string last;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) last = line;
    }
    s.why_not = "the SLURM controller " +
                (r.code == 124 ? "does not answer within " + std::to_string(timeout_s) + " s"
                               : "cannot be reached (" + last + ")");
    s.seen = sinfo + ", " + sbatch + "; but " + s.why_not;
    s.fix = "a running slurmctld named by this machine's slurm.conf (or SLURM_CONF), and munge";
  }
  if (!s.allocation.empty()) s.seen += "; inside allocation " + s.allocation;
  return s;
}

}  // namespace holo::slurm
