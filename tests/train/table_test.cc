#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "train/table.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(TextTable, AlignsNumbersRightAndTextLeft) {
  TextTable t({"split", "top1 (%)", "videos"});
  t.add_row({"val", TextTable::percent(0.91254), "1200"});
  t.add_row({"test", TextTable::percent(std::nullopt), "35"});
  t.add_rule().add_row({"overall", TextTable::number(7.5, 1), "1235"});
  EXPECT_EQ(t.str(),
            "split    top1 (%)  videos\n"
            "-------  --------  ------\n"
            "val         91.25    1200\n"
            "test            -      35\n"
            "-------  --------  ------\n"
            "overall       7.5    1235\n");
  EXPECT_EQ(t.rows(), 3);
  EXPECT_THAT(t.markdown(), HasSubstr("| split | top1 (%) | videos |\n|---|---|---|\n"));
  EXPECT_EQ(TextTable::number(std::nan("")), "-");
  EXPECT_THAT([&] { t.add_row({"x"}); },
              ThrowsMessage<Error>(HasSubstr("table row has 1 cells for 3 columns")));
}

}  // namespace
}  // namespace holo
