// Shared GoogleTest main: quiet logs, and a printed seed so a failing randomised test can be
// replayed with HOLO_TEST_SEED.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>

#include "core/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  holo::log::init(std::getenv("HOLO_LOG_LEVEL") ? "" : "warn");
  return RUN_ALL_TESTS();
}
