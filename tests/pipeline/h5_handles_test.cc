// pipeline/h5_handles.h: every identifier is closed by its owner, and a failed open names the
// HDF5 call, the object with its path and the file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "pipeline/h5_handles.h"
#include "tests/test_util.h"

namespace holo::pipeline {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

ssize_t open_objects() { return H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL); }

TEST(H5Handles, OwnersCloseWhatTheyOpenedAndMovesTransferOwnership) {
  h5::quiet_errors();
  const std::string path = holo::testing::temp_dir() + "/handles.h5";
  const ssize_t before = open_objects();
  {
    h5::Id file = h5::create_file(path, H5F_ACC_TRUNC);
    h5::Id group = h5::create_group(file.get(), "clips");
    const h5::Id space = h5::simple_space({2, 3});
    const h5::Id dcpl = h5::create_plist(H5P_DATASET_CREATE);
    h5::Id ds = h5::create_dataset(group.get(), "a", H5T_IEEE_F32LE, space.get(), dcpl.get());
    EXPECT_EQ(open_objects(), before + 3);  // file, group, dataset
    h5::Id moved = std::move(ds);
    EXPECT_FALSE(ds.valid());
    EXPECT_TRUE(moved.valid());
    moved.reset();
    EXPECT_EQ(open_objects(), before + 2);
  }
  EXPECT_EQ(open_objects(), before);
  {
    const h5::Id file = h5::open_file(path, H5F_ACC_RDONLY);
    const h5::Id ds = h5::open_dataset(file.get(), "/clips/a");
    const h5::Id space = h5::dataset_space(ds.get());
    EXPECT_EQ(H5Sget_simple_extent_ndims(space.get()), 2);
    EXPECT_EQ(H5Tget_class(h5::dataset_type(ds.get()).get()), H5T_FLOAT);
    EXPECT_FALSE(h5::try_open_object(file.get(), "missing").valid());
  }
  EXPECT_EQ(open_objects(), before);
}

TEST(H5Handles, FailuresNameTheCallTheObjectAndTheFile) {
  h5::quiet_errors();
  const std::string path = holo::testing::temp_dir() + "/failures.h5";
  {
    const h5::Id file = h5::create_file(path, H5F_ACC_TRUNC);
    h5::create_group(file.get(), "clips");
  }
  EXPECT_THAT([] { h5::open_file("/nonexistent/features.h5", H5F_ACC_RDONLY); },
              ThrowsMessage<CallError>(
                  AllOf(HasSubstr("HDF5 call failed: H5Fopen of file /nonexistent/features.h5"),
                        HasSubstr("h5_handles_test.cc"))));
  const h5::Id file = h5::open_file(path, H5F_ACC_RDONLY);
  const h5::Id clips = h5::open_group(file.get(), "clips");
  EXPECT_THAT([&] { h5::open_dataset(clips.get(), "missing"); },
              ThrowsMessage<CallError>(
                  HasSubstr("H5Dopen2 of dataset '/clips/missing' in " + path)));
  EXPECT_THAT([&] { h5::open_group(file.get(), "frames"); },
              ThrowsMessage<CallError>(HasSubstr("H5Gopen2 of group '/frames' in " + path)));
  EXPECT_THAT([&] { h5::open_attribute(clips.get(), "label"); },
              ThrowsMessage<CallError>(
                  HasSubstr("H5Aopen of attribute 'label' of object '/clips' in " + path)));
}

}  // namespace
}  // namespace holo::pipeline
