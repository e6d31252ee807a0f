#pragma once
/// Preemption signals. SIGUSR1 (SLURM's warning before the end of an allocation) and SIGTERM
/// set a flag; the trainer finishes its step, every rank agrees, a checkpoint is saved and the
/// process exits with kExitPreempted.

namespace holo::train {

/// Exit code of a worker that stopped on a signal after saving its checkpoint.
constexpr int kExitPreempted = 3;

/// Installs the handlers (idempotent).
void install_stop_handlers();
/// True once SIGUSR1 or SIGTERM arrived.
bool stop_requested();
/// The signal that asked to stop (0 if none).
int stop_signal();
/// For tests: clears the flag.
void reset_stop_request();

}  // namespace holo::train
