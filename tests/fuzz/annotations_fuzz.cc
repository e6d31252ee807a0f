// Annotation readers (pipeline/dataset.cc) through make_dataset(), the way a recipe reaches
// them: Kinetics CSV, path lists, UCF101 classInd + split lists, HMDB51 split folders, HVU
// CSVs. A malformed annotation must be refused with holo::Error (IoError naming the file and
// line); any other exception, sanitizer report or abort is a crash. The readers only take file
// names, so each input is written to files in a scratch folder.
//
// Input: a first line whose first byte picks the format ('0' kinetics, '1' list, '2' ucf101,
// '3' hmdb51, '4' hvu; any byte maps to one) and whose second byte picks the split, the clip
// file-name convention and the layout; the rest, cut at form feeds (\f), is the files:
//   kinetics, list: the split's file [\f the training file, which names the classes]
//   ucf101:         classInd.txt \f the split list (trainlist01.txt or testlist01.txt)
//   hmdb51:         one file per part, "<class>\n<lines>", written as <class>_test_split1.txt
//   hvu:            the Tag,Category file \f the split's CSV
// The videos folder holds a few (empty) clip files in the names these formats look for.

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/recipe.h"
#include "pipeline/dataset.h"
#include "tests/fuzz/fuzz_util.h"

namespace fs = std::filesystem;

namespace {

const char* const kFormats[] = {"kinetics", "list", "ucf101", "hmdb51", "hvu"};
const char* const kSplits[] = {"train", "val", "test"};
const char* const kNameTimes[] = {"auto", "seconds", "tenths"};
const char* const kLayouts[] = {"auto", "flat", "per_label"};

/// A class name usable as a file-name prefix: no '/', no NUL, not "." or "..", not empty.
std::string file_safe(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, 64)) out += (c == '/' || c == '\0') ? '_' : c;
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  holo::fuzz::quiet_logs();
  const fs::path videos = holo::fuzz::scratch_dir("annotations") / "videos";
  for (const char* clip :
       {"abseiling/aaaaaaaaaaa_000014_000024.mp4", "cooking, eggs/bbbbbbbbbbb_000005_000015.mp4",
        "ccccccccccc_000000_000010.mp4", "ddddddddddd_001015_001035.mp4",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "brush_hair/a.avi", "a/one.mp4",
        "a/two words.mp4"}) {
    holo::fuzz::write_file(videos / clip, "x");
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t eol = input.find('\n');
  const std::string_view head = input.substr(0, eol);
  const std::string_view rest = eol == std::string_view::npos ? "" : input.substr(eol + 1);
  const uint8_t format = head.size() > 0 ? static_cast<uint8_t>(head[0] - '0') % 5 : 0;
  const uint8_t options = head.size() > 1 ? static_cast<uint8_t>(head[1] - '0') : 0;

  const fs::path dir = holo::fuzz::scratch_dir("annotations");
  const fs::path files = dir / "files";
  fs::remove_all(files);
  fs::create_directories(files);

  holo::Recipe recipe;
  holo::DataOptions& d = recipe.data;
  d.dataset = kFormats[format];
  const std::string split = kSplits[options % 3];
  d.name_times = kNameTimes[(options / 3) % 3];
  d.layout = kLayouts[(options / 9) % 3];
  d.root = (dir / "videos").string();

  const auto parts = holo::fuzz::split(rest, "\f");
  const auto part = [&](size_t i) { return i < parts.size() ? parts[i] : std::string_view(); };
  const auto file = [&](const std::string& name, std::string_view bytes) {
    holo::fuzz::write_file(files / name, bytes);
    return (files / name).string();
  };
  const std::string split_file = split + ".txt";
  std::string* split_key = split == "train" ? &d.train : split == "val" ? &d.val : &d.test;
  switch (format) {
    case 0:  // kinetics
    case 1:  // list
      *split_key = file(split_file, part(0));
      if (split != "train" && parts.size() > 1) d.train = file("train.txt", part(1));
      break;
    case 2:  // ucf101: split lists next to classInd.txt, found by data.split
      d.class_index = file("classInd.txt", part(0));
      file(split == "train" ? "trainlist01.txt" : "testlist01.txt", part(1));
      break;
    case 3:  // hmdb51: a folder of split files
      for (const auto& p : parts) {
        const size_t nl = p.find('\n');
        if (nl == std::string_view::npos) continue;
        file(file_safe(p.substr(0, nl)) + "_test_split1.txt", p.substr(nl + 1));
      }
      *split_key = files.string();
      break;
    default:  // hvu
      d.categories = file("categories.csv", part(0));
      *split_key = file(split_file, part(1));
      break;
  }
  try {
    const auto dataset = holo::pipeline::make_dataset(recipe, split);
    dataset->content_hash();
  } catch (const holo::Error&) {
    // refused, with a message
  }
  return 0;
}
