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
           ", \"split\": \"val\", \"loss\": 1.5, \"top1\": 0.5, \"top5\": 0.9, \"note\": \"x\","
           " \"map\": null}\n";
    }
  }
  return s + "{\"step\": 10, \"split\": \"tr";
}

TEST(Plot, PanelsFromMetrics) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/metrics.jsonl", sample_metrics());
  const auto records = read_metrics_jsonl(dir + "/metrics.jsonl");
  EXPECT_EQ(records.size(), 13u);
  const auto panels = curves_from_metrics(records);
  ASSERT_EQ(panels.size(), 4u);
  EXPECT_EQ(panels[0].title, "loss");
  ASSERT_EQ(panels[0].series.size(), 2u);
  EXPECT_EQ(panels[0].series[0].label, "train");
  EXPECT_EQ(panels[0].series[0].x.size(), 10u);
  EXPECT_EQ(panels[0].series[0].y[5], 7.0);  // the later line of step 5
  EXPECT_EQ(panels[0].series[1].label, "val");
  EXPECT_EQ(panels[0].series[1].x, (std::vector<double>{4, 9}));
  EXPECT_EQ(panels[1].title, "learning rate");
  EXPECT_TRUE(panels[1].log_y);  // 0.1 .. 0.001
  EXPECT_EQ(panels[2].title, "top1");
  EXPECT_EQ(panels[3].title, "top5");
  EXPECT_EQ(panels[3].series.size(), 1u);
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

TEST(Plot, SvgWellFormedOnePolylinePerSeriesAndPngReadable) {
  const std::string dir = testing::temp_dir();
  write_file_atomic(dir + "/metrics.jsonl", sample_metrics());
  const CurveFiles files = write_curves(dir);
  EXPECT_EQ(files.panels, 4);
  EXPECT_EQ(files.svg, dir + "/curves.svg");
  ASSERT_TRUE(std::filesystem::exists(files.png));
  const std::string svg = read_file(files.svg);
  EXPECT_THAT(svg, HasSubstr("<text"));
  EXPECT_THAT(svg, HasSubstr(">learning rate</text>"));
  ASSERT_TRUE(testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string out = testing::run_python(dir, R"(
import xml.etree.ElementTree as ET
from PIL import Image
root = ET.parse(')" + files.svg + R"(').getroot()
ns = '{http://www.w3.org/2000/svg}'
lines = [len(p.get('points').split()) for p in root.iter(ns + 'polyline')]
texts = [t.text for t in root.iter(ns + 'text')]
im = Image.open(')" + files.png + R"(').convert('RGB')
colours = set(im.getdata())
with open(OUT, 'w') as f:
    f.write(' '.join(map(str, lines)) + '\n')
    f.write('%d %d %d %d %d\n' % (im.size[0], im.size[1], int(root.get('width')),
                                  int(root.get('height')), (0x1f, 0x77, 0xb4) in colours))
    f.write('%d\n' % ('step' in texts))
)");
  const auto lines = testing::parse_numbers(out.substr(0, out.find('\n')));
  // loss: train (10) and val (2); lr: train (10); top1: val (2); top5: val (2).
  EXPECT_EQ(lines, (std::vector<double>{10, 2, 10, 2, 2})) << out;
  const auto rest = testing::parse_numbers(out.substr(out.find('\n')));
  ASSERT_EQ(rest.size(), 6u) << out;
  EXPECT_EQ(rest[0], rest[2]);  // PNG and SVG have the same size
  EXPECT_EQ(rest[1], rest[3]);
  EXPECT_EQ(rest[0], 2 * 560);
  EXPECT_EQ(rest[4], 1);  // the first series' colour is drawn
  EXPECT_EQ(rest[5], 1);  // axis labels
}

}  // namespace
}  // namespace holo
