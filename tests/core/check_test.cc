// The check macros carry the failing call, its error string, rank and host.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>
extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/error.h>
}

#include "core/check.h"
#include "core/error.h"

namespace holo {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(Check, HolocheckCarriesConditionAndRank) {
  set_process_rank(3, 4);
  try {
    HOLO_CHECK(1 + 1 == 3, std::string("arithmetic broke"));
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("[rank 3 on "), HasSubstr("arithmetic broke"),
                                HasSubstr("1 + 1 == 3"), HasSubstr("check_test.cc")));
    EXPECT_EQ(e.exit_code(), 1);
  }
  set_process_rank(0, 1);
}

TEST(Check, LibavErrorNamesCallAndString) {
  AVFormatContext* ctx = nullptr;
  try {
    HOLO_AV_CHECK(avformat_open_input(&ctx, "/nonexistent/video.mp4", nullptr, nullptr));
    FAIL() << "no throw";
  } catch (const CallError& e) {
    EXPECT_EQ(e.library(), "libav");
    EXPECT_THAT(e.what(), AllOf(HasSubstr("avformat_open_input"), HasSubstr("/nonexistent/video.mp4"),
                                HasSubstr("No such file or directory")));
    EXPECT_LT(e.code(), 0);
  }
  EXPECT_EQ(HOLO_AV_CHECK(0), 0);  // success passes the value through
}

TEST(Check, Hdf5ErrorNamesCall) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // no stack dump on stderr
  try {
    HOLO_H5_CHECK(H5Fopen("/nonexistent/features.h5", H5F_ACC_RDONLY, H5P_DEFAULT));
    FAIL() << "no throw";
  } catch (const CallError& e) {
    EXPECT_EQ(e.library(), "HDF5");
    EXPECT_THAT(e.what(), HasSubstr("H5Fopen"));
  }
}

TEST(Check, MpiErrorNamesCallAndString) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) MPI_Init(nullptr, nullptr);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int x = 0;
  try {
    HOLO_MPI_CHECK(MPI_Bcast(&x, 1, MPI_INT, /*root=*/99, MPI_COMM_WORLD));
    FAIL() << "no throw";
  } catch (const CallError& e) {
    EXPECT_EQ(e.library(), "MPI");
    EXPECT_THAT(e.what(), AllOf(HasSubstr("MPI_Bcast"), HasSubstr("root")));
  }
  MPI_Finalize();
}

TEST(Errors, RecipeErrorFormat) {
  RecipeError e("r.toml", 4, 2, "optim.lr", "bad");
  EXPECT_STREQ(e.what(), "r.toml:4:2: key 'optim.lr': bad");
  EXPECT_EQ(e.exit_code(), 2);
  EXPECT_EQ(UsageError("u").exit_code(), 2);
  EXPECT_EQ(IoError("i").exit_code(), 1);
}

}  // namespace
}  // namespace holo
