#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/run_dir.h"
#include "tests/train/python_util.h"
#include "train/plot.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

/// Ten training lines, validation at steps 4 and 9, step 5 logged twice (a resumed run: the
/// second line wins) and a torn last line.
std::string sample_metrics() {
  std::string s;
  for (int step = 0; step < 10; ++step) {
    s += "{\"step\": " + std::to_string(step) + ", \"epoch\": " + std::to_string(step / 5) +
         ", \"split\": \"train\", \"loss\": " + std::to_string(2.0 - 0.1 * step) +
         ", \"lr\": " + std::to_string(step < 5 ? 0.1 : 0.001) + ", \"time\": 1.5}\n";
    if (step == 5) s += "{\"step\": 5, \"split\": \"train\", \"loss\": 7.0, \"lr\": 0.001}\n";
    if (step == 4 || step == 9) {
      s += "{\"step\": " + std::to_string(step) +
           ", \"split\": \"val\", \"loss\": 1.5, \"top1\": " + (step == 4 ? "0.5" : "0.7") +
           ", \"top5\": " + (step == 4 ? "0.9" : "0.95") + ", \"note\": \"x\", \"map\": null}\n";
    }
  }
  return s + "{\"step\": 10, \"split\": \"tr";
}

TEST(Plot, PanelsFromMetrics) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/metrics.jsonl", sample_metrics());
  const auto records = read_metrics_jsonl(dir + "/metrics.jsonl");
  EXPECT_EQ(records.size(), 13u);
  const auto panels = curves_from_metrics(records).panels;
  ASSERT_EQ(panels.size(), 3u);
  EXPECT_EQ(panels[0].title, "loss");
  ASSERT_EQ(panels[0].series.size(), 2u);
  EXPECT_EQ(panels[0].series[0].label, "train");
  EXPECT_EQ(panels[0].series[0].x.size(), 10u);
  EXPECT_EQ(panels[0].series[0].y[5], 7.0);  // the later line of step 5
  EXPECT_EQ(panels[0].series[1].label, "val");
  EXPECT_EQ(panels[0].series[1].x, (std::vector<double>{4, 9}));
  EXPECT_EQ(panels[1].title, "accuracy");
  ASSERT_EQ(panels[1].series.size(), 2u);
  EXPECT_EQ(panels[1].series[0].label, "val top-1");
  EXPECT_EQ(panels[1].series[1].label, "val top-5");  // the class count is unknown, top-5 < 1
  EXPECT_EQ(panels[2].title, "learning rate");
  EXPECT_TRUE(panels[2].log_y);  // 0.1 .. 0.001
}

/// A 2-class run as the trainer logs it: training loss, accuracy, throughput and a constant
/// learning rate every step; validation (loss, top1, top5 = 1, mean class accuracy, 8 videos)
/// every 4 steps.
std::string two_class_metrics() {
  std::string s;
  for (int step = 1; step <= 12; ++step) {
    s += "{\"step\": " + std::to_string(step) + ", \"epoch\": " + std::to_string((step - 1) / 4) +
         ", \"split\": \"train\", \"lr\": 0.01, \"loss\": " + std::to_string(0.7 / step) +
         ", \"acc\": " + std::to_string(0.4 + 0.05 * step) +
         ", \"clips_per_s\": " + std::to_string(100 + step % 3) +
         ", \"time\": " + std::to_string(step) + "}\n";
    if (step % 4 == 0) {
      s += "{\"step\": " + std::to_string(step) + ", \"epoch\": " + std::to_string(step / 4) +
           ", \"split\": \"val\", \"loss\": " + std::to_string(0.8 - 0.05 * step) +
           ", \"top1\": " + std::to_string(0.5 + step / 48.0) +
           ", \"top5\": 1.0, \"mean_class_acc\": " + std::to_string(0.5 + step / 40.0) +
           ", \"videos\": 8}\n";
    }
  }
  return s;
}

TEST(Plot, TwoClassRunHasNoTopFiveNorConstantPanelAndValLossBesideTrainLoss) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/metrics.jsonl", two_class_metrics());
  const auto records = read_metrics_jsonl(dir + "/metrics.jsonl");
  // With the class count known (2) and unknown (top-5 is 1 at every validation) alike.
  for (int64_t classes : {2, 0}) {
    const Curves curves = curves_from_metrics(records, classes);
    std::vector<std::string> titles;
    for (const auto& p : curves.panels) titles.push_back(p.title);
    EXPECT_EQ(titles, (std::vector<std::string>{"loss", "accuracy", "throughput"})) << classes;
    for (const auto& p : curves.panels) {
      bool changes = false;
      for (const auto& s : p.series) {
        EXPECT_THAT(s.label, ::testing::Not(HasSubstr("top-5"))) << p.title;
        for (double y : s.y) changes = changes || y != s.y[0];
      }
      EXPECT_TRUE(changes) << p.title << " draws only constant series";
    }
    const PlotPanel& loss = curves.panels[0];
    ASSERT_EQ(loss.series.size(), 2u);
    EXPECT_EQ(loss.series[0].label, "train");
    EXPECT_EQ(loss.series[1].label, "val");
    EXPECT_EQ(loss.series[1].x, (std::vector<double>{4, 8, 12}));
    EXPECT_TRUE(loss.series[1].markers);
    const PlotPanel& acc = curves.panels[1];
    ASSERT_EQ(acc.series.size(), 3u);
    EXPECT_EQ(acc.series[0].label, "train");
    EXPECT_EQ(acc.series[1].label, "val top-1");
    EXPECT_EQ(acc.series[2].label, "val mean class acc");
    EXPECT_THAT(curves.constants, ::testing::Contains("train lr 0.01"));
    EXPECT_THAT(curves.constants, ::testing::Contains("val videos 8"));
  }
  // Top-5 of 10 classes is drawn, also where it reaches 1.
  std::string ten = two_class_metrics();
  ten.replace(ten.find("\"top5\": 1.0"), 11, "\"top5\": 0.9");
  write_file_atomic(dir + "/ten.jsonl", ten);
  const Curves curves = curves_from_metrics(read_metrics_jsonl(dir + "/ten.jsonl"), 10);
  ASSERT_GE(curves.panels.size(), 2u);
  EXPECT_EQ(curves.panels[1].series.size(), 4u);
  EXPECT_EQ(curves.panels[1].series[2].label, "val top-5");
}

TEST(Plot, ClassCountComesFromTheRunsRecipe) {
  const std::string dir = testing::temp_dir();
  EXPECT_EQ(recorded_num_classes(dir), 0);  // no recipe.toml
  write_file_atomic(dir + "/recipe.toml", "[data]\ndataset = \"synth\"\nsynth_classes = 2\n");
  EXPECT_EQ(recorded_num_classes(dir), 2);
  write_file_atomic(dir + "/recipe.toml", "[data]\ndataset = \"kinetics\"\nnum_classes = 400\n");
  EXPECT_EQ(recorded_num_classes(dir), 400);
  write_file_atomic(dir + "/recipe.toml", "[data]\ndataset = \"kinetics\"\n");
  EXPECT_EQ(recorded_num_classes(dir), 0);  // from the dataset's labels: not recorded
  write_file_atomic(dir + "/recipe.toml", "[data]\nno_such_key = 1\n");
  EXPECT_EQ(recorded_num_classes(dir), 0);
}

TEST(Plot, AxesFitTheData) {
  PlotPanel acc;
  acc.y_floor = 0;
  acc.y_ceiling = 1;
  acc.series.push_back({"val top-5", {4, 8}, {1.0, 1.0}});
  PlotAxis a = y_axis(acc);
  EXPECT_EQ(a.hi, 1.0);  // not past the ceiling
  EXPECT_GE(a.lo, 0.8);
  EXPECT_LT(a.lo, 1.0);
  acc.series.push_back({"train", {1, 2, 3}, {0.25, 0.6, 0.95}});
  a = y_axis(acc);
  EXPECT_EQ(a.hi, 1.0);
  EXPECT_GE(a.lo, 0.0);
  EXPECT_LE(a.lo, 0.25);
  ASSERT_GE(a.ticks.size(), 3u);
  EXPECT_EQ(a.ticks.front(), a.lo);
  EXPECT_EQ(a.ticks.back(), a.hi);
  PlotPanel loss;
  loss.y_floor = 0;
  loss.series.push_back({"train", {1, 2, 3}, {0.05, 1.3, 2.6}});
  a = y_axis(loss);
  EXPECT_GE(a.lo, 0.0);
  EXPECT_LE(a.lo, 0.05);
  EXPECT_GE(a.hi, 2.6);
  EXPECT_LE(a.hi, 3.0);
  PlotPanel lr;
  lr.log_y = true;
  lr.series.push_back({"train", {1, 2}, {0.1, 0.001}});
  a = y_axis(lr);
  EXPECT_TRUE(a.log);
  EXPECT_DOUBLE_EQ(a.lo, 0.001);
  EXPECT_DOUBLE_EQ(a.hi, 0.1);
}

TEST(Plot, BadLinesNameFileAndLine) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/m.jsonl", "{\"step\": 1, \"split\": \"train\"}\n{oops\n{}\n");
  EXPECT_THAT([&] { read_metrics_jsonl(dir + "/m.jsonl"); },
              ThrowsMessage<IoError>(HasSubstr("m.jsonl:2: not a JSON line")));
  write_file_atomic(dir + "/n.jsonl", "{\"split\": \"train\", \"loss\": 1}\n");
  EXPECT_THAT([&] { read_metrics_jsonl(dir + "/n.jsonl"); },
              ThrowsMessage<IoError>(HasSubstr("n.jsonl:1: missing integer \"step\"")));
  EXPECT_THAT([&] { write_curves(dir + "/nowhere"); },
              ThrowsMessage<IoError>(HasSubstr("no metrics file in the run directory")));
  EXPECT_THAT([] { render_svg({}); }, ThrowsMessage<Error>(HasSubstr("nothing to draw")));
}

TEST(Plot, SvgAndPngFromOneDrawingPngDecodesWithValLossInTheLossPanel) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/metrics.jsonl", sample_metrics());
  const CurveFiles files = write_curves(dir);
  EXPECT_EQ(files.panels, 3);
  EXPECT_EQ(files.svg, dir + "/curves.svg");
  ASSERT_TRUE(std::filesystem::exists(files.png));
  ASSERT_TRUE(testing::have_reference_python())
      << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  // The PNG decoded with zlib alone (chunk CRCs, the five row filters), the SVG parsed as XML.
  const std::string out = testing::run_python(dir, R"(
import struct, zlib
import xml.etree.ElementTree as ET
data = open(')" + files.png + R"(', 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n'
pos, idat, header = 8, b'', None
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    assert struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body), kind
    if kind == b'IHDR': header = struct.unpack('>IIBBBBB', body)
    if kind == b'IDAT': idat += body
    pos += 12 + n
w, h, depth, colour, _, _, interlace = header
assert depth == 8 and colour in (2, 6) and interlace == 0, header
bpp = 3 if colour == 2 else 4
raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
for y in range(h):
    start = y * (stride + 1)
    f, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        paeth = a if pa <= pb and pa <= pc else b if pb <= pc else c
        line[i] = (line[i] + [0, a, b, (a + b) // 2, paeth][f]) & 0xFF
    rows.append(line)
    prev = line
def count(rgb, x0, x1, y0, y1):
    return sum(1 for y in range(y0, y1) for x in range(x0, x1)
               if tuple(rows[y][x * bpp:x * bpp + 3]) == rgb)
header_px = h - 2 * 340  # two rows of panels under the title
frame = (72, 540, header_px + 60, header_px + 340 - 46)  # inside the loss panel's frame
root = ET.parse(')" + files.svg + R"(').getroot()
glyphs = sum(1 for e in root.iter() if e.tag.endswith('use'))
with open(OUT, 'w') as f:
    f.write('%d %d %s %s ' % (w, h, root.get('width')[:-2], root.get('height')[:-2]))
    train, val = count((0x1f, 0x77, 0xb4), *frame), count((0xff, 0x7f, 0x0e), *frame)
    f.write('%d %d %d\n' % (train, val, glyphs))
)");
  const auto v = testing::parse_numbers(out);
  ASSERT_EQ(v.size(), 7u) << out;
  EXPECT_EQ(v[0], 2 * 560);       // two columns
  EXPECT_EQ(v[1], 2 * 340 + 32);  // two rows and the title
  EXPECT_EQ(v[0], v[2]);          // the SVG has the PNG's size
  EXPECT_EQ(v[1], v[3]);
  EXPECT_GT(v[4], 50) << "the training loss in the loss panel";
  EXPECT_GT(v[5], 10) << "the validation loss in the loss panel";
  EXPECT_GT(v[6], 100) << "text, as glyphs";
}

}  // namespace
}  // namespace holo
