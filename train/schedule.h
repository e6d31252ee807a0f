#pragma once
/// Learning-rate schedules as pure functions of the optimiser step, so a resumed run computes
/// the same rate from the step alone (nothing to checkpoint). Steps count optimiser updates from
/// 0; epoch-based boundaries (step, multistep) fall on whole epochs of `steps_per_epoch` steps.
///
///   constant:  lr = base
///   step:      lr = base * gamma^floor(epoch / step_epochs)
///   multistep: lr = base * gamma^(number of milestones <= epoch)
///   cosine:    lr = min_lr + (base - min_lr) * (1 + cos(pi * step / total_steps)) / 2,
///              min_lr from `step >= total_steps` on
///
/// where epoch = floor(step / steps_per_epoch). Linear warm-up over
/// W = round(warmup_epochs * steps_per_epoch) steps multiplies any of them by
/// min(1, (step + 1) / W), so the first update uses 1/W of the rate and update W-1 the full
/// rate; the decay itself runs from step 0 (as torch's ChainedScheduler of LinearLR with the
/// decay). See docs/metrics.md for the reasons.

#include <cstdint>

#include "core/recipe.h"

namespace holo {

/// Where in training a step is; all counts in optimiser steps.
struct ScheduleClock {
  int64_t steps_per_epoch = 1;  ///< > 0
  int64_t total_steps = 0;      ///< end of training; needed by cosine only (> 0 there)
};

/// Registers the schedules under schedule.kind (core/registry.h); train/registry.h calls it.
void register_schedules();

/// Number of warm-up steps: round(warmup_epochs * steps_per_epoch).
int64_t warmup_steps(const ScheduleOptions& options, int64_t steps_per_epoch);

/// The warm-up factor at `step`, in (0, 1].
double warmup_factor(const ScheduleOptions& options, int64_t step, int64_t steps_per_epoch);

/// The learning rate for optimiser step `step` (>= 0). Throws holo::Error for an unknown kind,
/// steps_per_epoch <= 0, step_epochs <= 0 (step), or total_steps <= 0 (cosine).
double learning_rate_at(const ScheduleOptions& options, double base_lr, int64_t step,
                        const ScheduleClock& clock);

/// Checks the options and the clock once, with the errors learning_rate_at would throw.
void check_schedule(const ScheduleOptions& options, const ScheduleClock& clock);

}  // namespace holo
