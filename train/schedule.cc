#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace holo {

void check_schedule(const ScheduleOptions& options, const ScheduleClock& clock) {
  if (clock.steps_per_epoch <= 0) {
    throw Error("schedule: steps per epoch must be positive, got " +
                std::to_string(clock.steps_per_epoch));
  }
  if (options.warmup_epochs < 0) {
    throw Error("schedule.warmup_epochs must not be negative, got " +
                std::to_string(options.warmup_epochs));
  }
  if (options.kind == "constant" || options.kind == "multistep") return;
  if (options.kind == "step") {
    if (options.step_epochs <= 0) {
      throw Error("schedule.step_epochs must be positive for kind \"step\", got " +
                  std::to_string(options.step_epochs));
    }
    return;
  }
  if (options.kind == "cosine") {
    if (clock.total_steps <= 0) {
      throw Error("schedule: kind \"cosine\" needs the total number of steps, got " +
                  std::to_string(clock.total_steps));
    }
    return;
  }
  throw Error("schedule.kind: unknown schedule \"" + options.kind +
              "\" (constant, step, multistep, cosine)");
}

int64_t warmup_steps(const ScheduleOptions& options, int64_t steps_per_epoch) {
  return static_cast<int64_t>(std::llround(options.warmup_epochs * steps_per_epoch));
}

double warmup_factor(const ScheduleOptions& options, int64_t step, int64_t steps_per_epoch) {
  const int64_t w = warmup_steps(options, steps_per_epoch);
  if (w <= 0 || step + 1 >= w) return 1.0;
  return static_cast<double>(step + 1) / static_cast<double>(w);
}

double learning_rate_at(const ScheduleOptions& options, double base_lr, int64_t step,
                        const ScheduleClock& clock) {
  check_schedule(options, clock);
  HOLO_CHECK(step >= 0, "schedule: negative step " + std::to_string(step));
  const int64_t epoch = step / clock.steps_per_epoch;
  double lr = base_lr;
  if (options.kind == "step") {
    lr = base_lr * std::pow(options.gamma, static_cast<double>(epoch / options.step_epochs));
  } else if (options.kind == "multistep") {
    const auto passed = std::count_if(options.milestones.begin(), options.milestones.end(),
                                      [epoch](int64_t m) { return m <= epoch; });
    lr = base_lr * std::pow(options.gamma, static_cast<double>(passed));
  } else if (options.kind == "cosine") {
    const double t = std::min(1.0, static_cast<double>(step) / clock.total_steps);
    lr = options.min_lr + (base_lr - options.min_lr) * 0.5 * (1.0 + std::cos(M_PI * t));
  }
  return lr * warmup_factor(options, step, clock.steps_per_epoch);
}

}  // namespace holo
