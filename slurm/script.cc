#include "slurm/script.h"

#include <cctype>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/shell.h"

namespace holo::slurm {
namespace fs = std::filesystem;
namespace {

/// A key's value re-checked against its schema entry; throws UsageError naming the key.
void check_key(const Recipe& recipe, const std::string& path) {
  const KeyDef* key = find_key(path);
  HOLO_CHECK(key != nullptr, "no schema entry for " + path);
  const std::string problem = check_value(*key, key->get(recipe));
  if (!problem.empty()) throw UsageError("recipe key '" + path + "': " + problem);
}

/// One line of text for a comment: control characters shown as '?'.
std::string comment_text(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  return out;
}

/// A path for --output/--error: '%' doubled, since sbatch expands %j, %x, ... in them.
std::string escape_percent(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '%') out += '%';
  }
  return out;
}

}  // namespace

RunFiles::RunFiles(const std::string& dir)
    : run_dir(dir),
      slurm_dir((fs::path(dir) / "slurm").string()),
      script((fs::path(slurm_dir) / "job.sbatch").string()),
      recipe((fs::path(slurm_dir) / "recipe.toml").string()),
      job_id((fs::path(slurm_dir) / "job_id").string()),
      events((fs::path(slurm_dir) / "events.log").string()) {}

std::string RunFiles::output(const std::string& id) const {
  return (fs::path(slurm_dir) / ("job-" + id + ".out")).string();
}

std::string RunFiles::error(const std::string& id) const {
  return (fs::path(slurm_dir) / ("job-" + id + ".err")).string();
}

std::string shell_quote(const std::string& s) { return holo::shell_quote(s); }

std::string sbatch_quote(const std::string& s, const std::string& what) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      throw UsageError(what + " contains a control character (e.g. a newline), which cannot be "
                       "written into an #SBATCH line: " + comment_text(s));
    }
    if (c == '"' || c == '\\') out += '\\';
    out += static_cast<char>(c);
  }
  return out + "\"";
}

int64_t tasks_per_node(const SlurmOptions& o) {
  if (o.tasks_per_node > 0) return o.tasks_per_node;
  return o.gpus_per_node > 0 ? o.gpus_per_node : 1;
}

int64_t time_limit_seconds(const std::string& time) {
  const KeyDef* key = find_key("slurm.time");
  HOLO_CHECK(key != nullptr && key->check_form, "slurm.time has no form check");
  const std::string problem = key->check_form(time);
  if (!problem.empty()) throw UsageError("slurm.time: " + problem);
  const size_t dash = time.find('-');
  const int64_t days = dash == std::string::npos ? 0 : std::stoll(time.substr(0, dash));
  std::vector<int64_t> v;
  std::stringstream clock(dash == std::string::npos ? time : time.substr(dash + 1));
  for (std::string f; std::getline(clock, f, ':');) v.push_back(std::stoll(f));
  if (dash != std::string::npos) {  // D-H[:M[:S]]
    return days * 86400 + v[0] * 3600 + (v.size() > 1 ? v[1] * 60 : 0) + (v.size() > 2 ? v[2] : 0);
  }
  if (v.size() == 3) return v[0] * 3600 + v[1] * 60 + v[2];  // H:M:S
  return v[0] * 60 + (v.size() > 1 ? v[1] : 0);               // M or M:S
}

void validate(const Recipe& recipe) {
  for (const auto& key : recipe_schema()) {
    if (key.path.compare(0, 6, "slurm.") == 0) check_key(recipe, key.path);
  }
  const SlurmOptions& o = recipe.slurm;
  if (o.tasks_per_node > 0 && o.gpus_per_node > 0 && o.tasks_per_node != o.gpus_per_node) {
    throw UsageError("slurm.tasks_per_node = " + std::to_string(o.tasks_per_node) +
                     " must equal slurm.gpus_per_node = " + std::to_string(o.gpus_per_node) +
                     " (one worker per GPU), or be 0");
  }
  if (!o.gpu_type.empty() && o.gpus_per_node == 0) {
    throw UsageError("slurm.gpu_type = \"" + o.gpu_type + "\" needs slurm.gpus_per_node > 0");
  }
  const int64_t limit = time_limit_seconds(o.time);
  if (o.grace_s >= limit) {
    throw UsageError("slurm.grace_s = " + std::to_string(o.grace_s) +
                     " must be shorter than the time limit slurm.time = \"" + o.time + "\" (" +
                     std::to_string(limit) + " s)");
  }
}

std::string job_name(const Recipe& recipe) {
  std::string name = "holo-";
  for (unsigned char c : recipe.run.name) {
    name += (std::isalnum(c) || c == '_' || c == '.' || c == '-') ? static_cast<char>(c) : '_';
  }
  return name;
}

std::string build_script(const Recipe& recipe, const ScriptOptions& options) {
  validate(recipe);
  const SlurmOptions& o = recipe.slurm;
  if (options.run_dir.empty() || fs::path(options.run_dir).is_relative()) {
    throw UsageError("the run directory must be an absolute path, got '" + options.run_dir + "'");
  }
  if (options.holo_binary.empty() || fs::path(options.holo_binary).is_relative()) {
    throw UsageError("the holo binary must be an absolute path, got '" + options.holo_binary + "'");
  }
  if (options.run_dir.find('\\') != std::string::npos) {
    // A backslash anywhere in an --output path turns off SLURM's %j expansion.
    throw UsageError("the run directory '" + options.run_dir +
                     "' contains a backslash, which SLURM's output file names cannot carry");
  }
  const RunFiles files(options.run_dir);
  const int64_t tasks = tasks_per_node(o);

  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# Generated by `holo submit`";
  if (!options.origin.empty()) s << " from " << comment_text(options.origin);
  s << ".\n"
    << "# Trains " << comment_text(files.recipe) << " (the resolved recipe) with "
    << o.nodes << " node(s) x " << tasks << " worker(s).\n"
    << "# On USR1 (" << o.grace_s << " s before the allocation ends, or from\n"
    << "# `scancel --signal=USR1 --batch`) the workers save a checkpoint and exit with code "
    << kExitPreempted << "; the job\n"
    << "# then requeues itself (at most " << o.max_restarts
    << " times) and resumes from the newest checkpoint in the run directory.\n"
    << "# Workers that fail (a worker killed, a node lost) requeue the job the same way, within\n"
    << "# the same budget.\n";

  // #SBATCH lines: read by sbatch's parser (quotes and backslash escapes), not by the shell.
  auto opt = [&](const std::string& name, const std::string& value) {
    s << "#SBATCH --" << name << "=" << sbatch_quote(value, "slurm " + name + " value") << "\n";
  };
  opt("job-name", job_name(recipe));
  opt("chdir", options.run_dir);
  opt("output", escape_percent(files.slurm_dir) + "/job-%j.out");
  opt("error", escape_percent(files.slurm_dir) + "/job-%j.err");
  s << "#SBATCH --open-mode=append\n";
  s << "#SBATCH --nodes=" << o.nodes << "\n";
  s << "#SBATCH --ntasks-per-node=" << tasks << "\n";
  if (o.gpus_per_node > 0) {
    opt("gpus-per-node", (o.gpu_type.empty() ? "" : o.gpu_type + ":") + std::to_string(o.gpus_per_node));
  }
  s << "#SBATCH --cpus-per-task=" << o.cpus_per_task << "\n";
  if (!o.mem.empty()) opt("mem", o.mem);
  opt("time", o.time);
  if (!o.partition.empty()) opt("partition", o.partition);
  if (!o.account.empty()) opt("account", o.account);
  if (!o.qos.empty()) opt("qos", o.qos);
  if (!o.constraint.empty()) opt("constraint", o.constraint);
  s << "#SBATCH --requeue\n";
  s << "#SBATCH --signal=B:USR1@" << o.grace_s << "\n";

  // The body: every value from the recipe or the command line is a single-quoted word.
  s << "\nset -u\n\n"
    << "run_dir=" << shell_quote(options.run_dir) << "\n"
    << "holo=" << shell_quote(options.holo_binary) << "\n"
    << "recipe=" << shell_quote(files.recipe) << "\n"
    << "events=" << shell_quote(files.events) << "\n"
    << "max_restarts=" << o.max_restarts << "\n"
    << "restart=\"${SLURM_RESTART_COUNT:-0}\"\n\n";

  s << "# Worker environment.\n"
    << "export HOLO_NUM_THREADS=\"${HOLO_NUM_THREADS:-" << o.cpus_per_task << "}\"\n";
  for (const auto& assignment : o.env) {
    const size_t eq = assignment.find('=');
    s << "export " << assignment.substr(0, eq) << "=" << shell_quote(assignment.substr(eq + 1)) << "\n";
  }

  s << "\n# Workers: " << o.nodes << " node(s) x " << tasks << " worker(s).\n";
  if (o.launcher == "srun") {
    // No --kill-on-bad-exit: after a preemption warning every rank exits with code 3 once the
    // checkpoint is written, and the first to exit must not cut the others' writes short.
    // --wait instead: once one worker has ended (a node lost, a worker killed), the others are
    // killed kWorkerExitWait_s later, so ranks blocked in a collective with a dead peer (MPI
    // over TCP does not notice) do not keep the allocation until dist.timeout_s or forever.
    s << "launch=(srun --mpi=" << o.mpi << " --kill-on-bad-exit=0 --nodes=" << o.nodes
      << " --ntasks-per-node=" << tasks << " --cpus-per-task=" << o.cpus_per_task
      << " --wait=" << kWorkerExitWait_s << ")\n";
  } else {
    s << "launch=(mpirun -np " << o.nodes * tasks << " --map-by ppr:" << tasks
      << ":node --bind-to none -x HOLO_NUM_THREADS";
    for (const auto& assignment : o.env) s << " -x " << assignment.substr(0, assignment.find('='));
    s << ")\n"
      << "if [ \"$(id -u)\" = 0 ]; then launch+=(--allow-run-as-root); fi\n";
  }
  s << "args=(train \"$recipe\")\n"
    << "# A restarted job always resumes from the newest checkpoint of the run directory.\n"
    << "if [ \"$restart\" -gt 0 ]; then args+=(--set checkpoint.resume=auto); fi\n";

  s << R"SH(
note() {
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) job ${SLURM_JOB_ID:-?} restart $restart: $*"
  printf '%s\n' "$line" >>"$events"
  printf 'holo-job: %s\n' "$line"
}
fail() {
  note "$*"
  printf 'holo-job: %s\n' "$*" >&2
}

worker=
warned=0
stopping=0
on_usr1() {
  warned=1
  note "USR1: the allocation ends soon; asking the workers to save a checkpoint and stop"
  if [ -n "$worker" ]; then kill -USR1 "$worker" 2>/dev/null; fi
}
on_term() {
  stopping=1
  note "TERM: the scheduler is ending the job (cancel, requeue or time limit)"
}
trap on_usr1 USR1
trap on_term TERM

note "started (SLURM_RESTART_COUNT=$restart) on ${SLURM_JOB_NODELIST:-$(hostname -s)}: ${SLURM_JOB_NUM_NODES:-1} node(s), ${SLURM_NTASKS:-1} worker(s)"
"${launch[@]}" "$holo" "${args[@]}" &
worker=$!
# A warning that came before the workers existed is passed on now.
if [ "$warned" = 1 ]; then kill -USR1 "$worker" 2>/dev/null; fi
while :; do
  wait "$worker"
  rc=$?
  # wait also returns when a trapped signal arrives; only a reaped worker ends the loop.
  kill -0 "$worker" 2>/dev/null || break
done

if [ "$rc" = 0 ]; then
  note "finished: training complete"
  exit 0
fi
if [ "$stopping" = 1 ]; then
  note "ended by the scheduler; workers exited with code $rc"
  exit "$rc"
fi
if [ "$rc" = 3 ] || [ "$warned" = 1 ]; then
  if [ "$rc" = 3 ]; then
    note "workers saved a checkpoint and stopped (exit code 3)"
  else
    note "workers exited with code $rc after the warning, before saving: a restart resumes from the last periodic checkpoint"
  fi
  if [ "$restart" -lt "$max_restarts" ]; then
    note "requeueing: restart $((restart + 1)) of $max_restarts"
    # The requeue itself ends this allocation with SIGTERM: nothing is left to do here.
    trap '' TERM
    if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
    fail "scontrol requeue failed: resubmit with 'holo submit' to resume from the newest checkpoint"
    exit 3
  fi
  fail "restart budget exhausted (slurm.max_restarts = $max_restarts, restarts used: $restart): not requeueing; resubmit with 'holo submit' to resume from the newest checkpoint"
  exit 3
fi
# A worker failed (killed, a node lost, an error): the restart resumes from the newest
# checkpoint, periodic or saved, while the budget lasts.
if [ "$restart" -lt "$max_restarts" ]; then
  # A node that can no longer start tasks (its slurmd or the node itself lost) would keep the
  # requeued job pending for it without end: one task per node tells, and the job ends instead.
  if ! probe=$(timeout 120 srun --mpi=none --nodes="${SLURM_JOB_NUM_NODES:-1}" --ntasks-per-node=1 --kill-on-bad-exit=1 true 2>&1); then
    fail "workers failed (exit code $rc) and a node of this allocation (${SLURM_JOB_NODELIST:-?}) cannot start tasks ($(printf '%s\n' "$probe" | grep -m1 -i 'error' | sed 's/^srun: //')): not requeueing, as the job would wait for that node; 'holo submit' again once it is back (it refuses while nodes are down, naming them) or with fewer --nodes"
    exit "$rc"
  fi
  note "workers failed (exit code $rc): requeueing: restart $((restart + 1)) of $max_restarts; it resumes from the newest checkpoint"
  trap '' TERM
  if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
  fail "scontrol requeue failed after workers exited with code $rc: resubmit with 'holo submit' to resume from the newest checkpoint"
  exit "$rc"
fi
fail "failed: workers exited with code $rc; restart budget exhausted (slurm.max_restarts = $max_restarts, restarts used: $restart): not requeueing"
exit "$rc"
)SH";
  return s.str();
}

}  // namespace holo::slurm
