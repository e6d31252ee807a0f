#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "tests/train/python_util.h"
#include "train/schedule.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

ScheduleOptions options(const std::string& kind) {
  ScheduleOptions o;
  o.kind = kind;
  return o;
}

TEST(Schedule, HandValues) {
  const ScheduleClock clock{10, 1000};
  auto step = options("step");  // /10 every 30 epochs (the thesis's recipes)
  EXPECT_DOUBLE_EQ(learning_rate_at(step, 0.1, 0, clock), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(step, 0.1, 299, clock), 0.1);
  EXPECT_NEAR(learning_rate_at(step, 0.1, 300, clock), 0.01, 1e-15);
  EXPECT_NEAR(learning_rate_at(step, 0.1, 600, clock), 0.001, 1e-15);

  auto multi = options("multistep");
  multi.milestones = {2, 5};
  EXPECT_DOUBLE_EQ(learning_rate_at(multi, 1.0, 19, clock), 1.0);
  EXPECT_NEAR(learning_rate_at(multi, 1.0, 20, clock), 0.1, 1e-15);
  EXPECT_NEAR(learning_rate_at(multi, 1.0, 49, clock), 0.1, 1e-15);
  EXPECT_NEAR(learning_rate_at(multi, 1.0, 50, clock), 0.01, 1e-15);

  auto cosine = options("cosine");
  EXPECT_DOUBLE_EQ(learning_rate_at(cosine, 0.1, 0, clock), 0.1);
  EXPECT_NEAR(learning_rate_at(cosine, 0.1, 500, clock), 0.05, 1e-15);
  EXPECT_NEAR(learning_rate_at(cosine, 0.1, 1000, clock), 0.0, 1e-15);
  EXPECT_NEAR(learning_rate_at(cosine, 0.1, 5000, clock), 0.0, 1e-15);
  cosine.min_lr = 0.01;
  EXPECT_NEAR(learning_rate_at(cosine, 0.1, 500, clock), 0.055, 1e-15);
  EXPECT_NEAR(learning_rate_at(cosine, 0.1, 250, clock),
              0.01 + 0.09 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-15);

  auto constant = options("constant");
  constant.warmup_epochs = 0.5;  // W = 5 steps
  EXPECT_EQ(warmup_steps(constant, 10), 5);
  EXPECT_DOUBLE_EQ(learning_rate_at(constant, 0.5, 0, clock), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate_at(constant, 0.5, 2, clock), 0.3);
  EXPECT_DOUBLE_EQ(learning_rate_at(constant, 0.5, 4, clock), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate_at(constant, 0.5, 100, clock), 0.5);
}

TEST(Schedule, ErrorsNameTheKey) {
  EXPECT_THAT([] { learning_rate_at(options("poly"), 0.1, 0, {10, 100}); },
              ThrowsMessage<Error>(HasSubstr("key 'schedule.kind': unknown schedule \"poly\"")));
  EXPECT_THAT([] { learning_rate_at(options("cosine"), 0.1, 0, {10, 0}); },
              ThrowsMessage<Error>(HasSubstr("needs the total number of steps")));
  auto step = options("step");
  step.step_epochs = 0;
  EXPECT_THAT([&] { learning_rate_at(step, 0.1, 0, {10, 100}); },
              ThrowsMessage<Error>(HasSubstr("schedule.step_epochs must be positive")));
  EXPECT_THAT([] { learning_rate_at(options("step"), 0.1, 0, {0, 100}); },
              ThrowsMessage<Error>(HasSubstr("steps per epoch must be positive")));
}

/// The same schedules built from torch.optim.lr_scheduler, stepped once per optimiser step.
TEST(Schedule, MatchesTorchSchedulers) {
  ASSERT_TRUE(testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string out = testing::run_python(testing::temp_dir(), R"(
import warnings; warnings.filterwarnings('ignore')
import torch
from torch.optim import lr_scheduler as S
def run(make, steps, lr=0.4):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]['lr']); opt.step(); sched.step()
    return out
cases = [
    run(lambda o: S.StepLR(o, step_size=12, gamma=0.5), 40),
    run(lambda o: S.MultiStepLR(o, milestones=[6, 15], gamma=0.1), 30),
    run(lambda o: S.CosineAnnealingLR(o, T_max=50, eta_min=0.01), 51),
    run(lambda o: S.ChainedScheduler([S.LinearLR(o, 1 / 5, 1.0, 4), S.StepLR(o, 12, 0.5)]), 30),
    run(lambda o: S.ChainedScheduler([S.LinearLR(o, 1 / 5, 1.0, 4), S.CosineAnnealingLR(o, 40)]), 40),
    run(lambda o: S.LinearLR(o, 1 / 8, 1.0, 7), 12),
]
with open(OUT, 'w') as f:
    for c in cases:
        f.write(' '.join('%.17g' % x for x in c) + '\n')
)");
  std::vector<std::vector<double>> ref;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) ref.push_back(testing::parse_numbers(line));
  ASSERT_EQ(ref.size(), 6u) << out;

  struct Case {
    ScheduleOptions o;
    ScheduleClock clock;
  };
  std::vector<Case> cases(6);
  cases[0] = {options("step"), {4, 0}};
  cases[0].o.step_epochs = 3;
  cases[0].o.gamma = 0.5;
  cases[1] = {options("multistep"), {3, 0}};
  cases[1].o.milestones = {2, 5};
  cases[2] = {options("cosine"), {7, 50}};
  cases[2].o.min_lr = 0.01;
  cases[3] = {options("step"), {4, 0}};
  cases[3].o.step_epochs = 3;
  cases[3].o.gamma = 0.5;
  cases[3].o.warmup_epochs = 1.25;  // 5 steps
  cases[4] = {options("cosine"), {8, 40}};
  cases[4].o.warmup_epochs = 0.625;  // 5 steps
  cases[5] = {options("constant"), {16, 0}};
  cases[5].o.warmup_epochs = 0.5;  // 8 steps
  for (size_t c = 0; c < cases.size(); ++c) {
    for (size_t s = 0; s < ref[c].size(); ++s) {
      const double lr = learning_rate_at(cases[c].o, 0.4, static_cast<int64_t>(s), cases[c].clock);
      EXPECT_NEAR(lr, ref[c][s], 1e-12 + 1e-9 * ref[c][s]) << "case " << c << " step " << s;
    }
  }
}

}  // namespace
}  // namespace holo
