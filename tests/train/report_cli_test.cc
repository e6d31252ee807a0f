#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/run_dir.h"
#include "tests/train/python_util.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using testing::holo_binary;
using testing::run_command;

TEST(ReportCli, PlotWritesBothImagesAndFailsWithoutMetrics) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/metrics.jsonl",
                    "{\"step\": 0, \"split\": \"train\", \"loss\": 2.0, \"lr\": 0.1}\n"
                    "{\"step\": 5, \"split\": \"train\", \"loss\": 1.0, \"lr\": 0.1}\n"
                    "{\"step\": 5, \"split\": \"val\", \"loss\": 1.2, \"top1\": 0.4}\n");
  const auto ok = run_command(holo_binary() + " plot " + dir);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("2 panels"));  // loss and accuracy
  EXPECT_THAT(ok.output, HasSubstr("not drawn, constant: train lr 0.1"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/curves.svg"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/curves.png"));
  const auto bad = run_command(holo_binary() + " plot " + dir + "/empty");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.output, HasSubstr("no metrics file in the run directory"));
}

TEST(ReportCli, ClusterReadsBothLayoutsAndScores) {
  ASSERT_TRUE(testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string dir = testing::temp_dir();
  // Four separated blobs: a matrix file with ids and labels, and a file with one F x D
  // dataset per video carrying a "label" attribute.
  testing::run_python(dir, R"(
import h5py, numpy as np
rng = np.random.default_rng(0)
labels = np.repeat(np.arange(4), 20); rng.shuffle(labels)
x = rng.normal(0, 6, (4, 12))[labels] + rng.normal(0, 1, (80, 12))
with h5py.File(')" + dir + R"(/m.h5', 'w') as f:
    f['features'] = x.astype('float32'); f['labels'] = labels
    f['ids'] = np.array(['v%02d' % i for i in range(80)], dtype=h5py.string_dtype())
with h5py.File(')" + dir + R"(/p.h5', 'w') as f:
    g = f.create_group('clips')
    for i, l in enumerate(labels):
        g.create_dataset('v%02d' % i, data=np.stack([x[i], x[i]]).astype('float32')).attrs['label'] = int(l)
open(OUT, 'w').write('ok')
)");
  const auto m = run_command(holo_binary() + " cluster " + dir + "/m.h5 --k 4 --assignments " +
                             dir + "/a.csv");
  EXPECT_EQ(m.exit_code, 0) << m.output;
  EXPECT_THAT(m.output, HasSubstr("clustering accuracy (%)"));
  EXPECT_THAT(m.output, HasSubstr("100.00   100.00"));
  EXPECT_THAT(read_file(dir + "/a.csv"), HasSubstr("id,label,cluster\nv00,"));
  const auto p = run_command(holo_binary() + " cluster " + dir + "/p.h5 --k 4 --group clips");
  EXPECT_EQ(p.exit_code, 0) << p.output;
  EXPECT_THAT(p.output, HasSubstr("one dataset per video under 'clips'"));
  EXPECT_THAT(p.output, HasSubstr("100.00   100.00"));
  const auto bad = run_command(holo_binary() + " cluster " + dir + "/missing.h5 --k 4");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.output, HasSubstr("cannot open feature file"));
}

}  // namespace
}  // namespace holo
