#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/registry.h"

namespace holo {

namespace {

/// One schedule.kind: its own checks of the options and the clock, and its rate before warm-up.
struct ScheduleKind {
  std::function<void(const ScheduleOptions&, const ScheduleClock&)> check;
  std::function<double(const ScheduleOptions&, double base, int64_t step, int64_t epoch, const ScheduleClock&)> rate;
};

const Registry<ScheduleKind>& schedules() {
  static const Registry<ScheduleKind> registry = [] {
    Registry<ScheduleKind> r("schedule.kind", "schedule");
    r.add("constant", "lr = base",
          {{}, [](const ScheduleOptions&, double base, int64_t, int64_t, const ScheduleClock&) { return base; }});
    r.add("step", "base * gamma^floor(epoch / schedule.step_epochs)",
          {[](const ScheduleOptions& o, const ScheduleClock&) {
             if (o.step_epochs <= 0) {
               throw Error("schedule.step_epochs must be positive for kind \"step\", got " + std::to_string(o.step_epochs));
             }
           },
           [](const ScheduleOptions& o, double base, int64_t, int64_t epoch, const ScheduleClock&) {
             return base * std::pow(o.gamma, static_cast<double>(epoch / o.step_epochs));
           }});
    r.add("multistep", "base * gamma^(the schedule.milestones passed)",
          {{}, [](const ScheduleOptions& o, double base, int64_t, int64_t epoch, const ScheduleClock&) {
             const auto passed = std::count_if(o.milestones.begin(), o.milestones.end(),
                                               [epoch](int64_t m) { return m <= epoch; });
             return base * std::pow(o.gamma, static_cast<double>(passed));
           }});
    r.add("cosine", "min_lr + (base - min_lr) (1 + cos(pi step / total steps)) / 2",
          {[](const ScheduleOptions&, const ScheduleClock& clock) {
             if (clock.total_steps <= 0) {
               throw Error("schedule: kind \"cosine\" needs the total number of steps, got " +
                           std::to_string(clock.total_steps));
             }
           },
           [](const ScheduleOptions& o, double base, int64_t step, int64_t, const ScheduleClock& clock) {
             const double t = std::min(1.0, static_cast<double>(step) / static_cast<double>(clock.total_steps));
             return o.min_lr + (base - o.min_lr) * 0.5 * (1.0 + std::cos(M_PI * t));
           }});
    return r;
  }();
  return registry;
}

}  // namespace

void register_schedules() { schedules(); }

void check_schedule(const ScheduleOptions& options, const ScheduleClock& clock) {
  if (clock.steps_per_epoch <= 0) {
    throw Error("schedule: steps per epoch must be positive, got " +
                std::to_string(clock.steps_per_epoch));
  }
  if (options.warmup_epochs < 0) {
    throw Error("schedule.warmup_epochs must not be negative, got " +
                std::to_string(options.warmup_epochs));
  }
  const auto& kind = schedules().at(options.kind);
  if (kind.check) kind.check(options, clock);
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
  const double lr = schedules().at(options.kind).rate(options, base_lr, step, epoch, clock);
  return lr * warmup_factor(options, step, clock.steps_per_epoch);
}

}  // namespace holo
