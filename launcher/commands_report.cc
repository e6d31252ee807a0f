// holo plot RUN_DIR | holo cluster FEATURES.h5 --k N

#include <CLI/CLI.hpp>
#include <hdf5.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include "core/check.h"
#include "core/error.h"
#include "core/run_dir.h"
#include "launcher/cli.h"
#include "pipeline/h5_handles.h"
#include "train/cluster.h"
#include "train/plot.h"
#include "train/table.h"

namespace holo::cli {
namespace {

namespace h5 = holo::pipeline::h5;

// ---- HDF5 reading ------------------------------------------------------------------------

bool has_link(hid_t file, const std::string& name) {
  return H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<hsize_t> dims_of(hid_t dataset) {
  const h5::Id space = h5::dataset_space(dataset);
  const int rank = HOLO_H5_CHECK(H5Sget_simple_extent_ndims(space.get()));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  HOLO_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
  return dims;
}

std::vector<float> read_floats(hid_t dataset) {
  hsize_t n = 1;
  for (hsize_t d : dims_of(dataset)) n *= d;
  std::vector<float> v(n);
  if (n > 0) {
    HOLO_H5_CHECK(H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()));
  }
  return v;
}

std::vector<int64_t> read_ints(hid_t file, const std::string& name) {
  const h5::Id ds = h5::open_dataset(file, name);
  hsize_t n = 1;
  for (hsize_t d : dims_of(ds.get())) n *= d;
  std::vector<int64_t> v(n);
  if (n > 0) {
    HOLO_H5_CHECK(H5Dread(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()));
  }
  return v;
}

/// A 1-D dataset of strings (variable or fixed length).
std::vector<std::string> read_strings(hid_t file, const std::string& name) {
  const h5::Id ds = h5::open_dataset(file, name);
  const h5::Id type = h5::dataset_type(ds.get());
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw IoError("dataset '" + name + "' does not hold strings");
  }
  const auto dims = dims_of(ds.get());
  const size_t n = dims.empty() ? 1 : static_cast<size_t>(dims[0]);
  std::vector<std::string> out;
  if (H5Tis_variable_str(type.get()) > 0) {
    const h5::Id mem = h5::copy_type(H5T_C_S1);
    HOLO_H5_CHECK(H5Tset_size(mem.get(), H5T_VARIABLE));
    HOLO_H5_CHECK(H5Tset_cset(mem.get(), H5Tget_cset(type.get())));
    std::vector<char*> p(n, nullptr);
    HOLO_H5_CHECK(H5Dread(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data()));
    for (char* s : p) out.emplace_back(s ? s : "");
    const h5::Id space = h5::dataset_space(ds.get());
    HOLO_H5_CHECK(H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, p.data()));
  } else {
    const size_t width = H5Tget_size(type.get());
    std::vector<char> buf(n * width);
    HOLO_H5_CHECK(H5Dread(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
    for (size_t i = 0; i < n; ++i) {
      std::string s(buf.data() + i * width, width);
      out.push_back(s.substr(0, s.find('\0')));
    }
  }
  return out;
}

/// Features to cluster, one row per video, with their ids and (optionally) labels.
struct ClusterInput {
  FeatureMatrix features;
  std::vector<std::string> ids;
  std::vector<int64_t> labels;  ///< empty when none were found
  std::string layout;
};

struct ClusterArgs {
  std::string file;
  int64_t k = 0;
  std::string dataset = "features";
  std::string group;  ///< empty: "/clips" when present (the feature store's index), else "/"
  std::string labels_dataset = "labels";
  std::string labels_file;
  std::string assignments;
  int64_t restarts = 10;
  int64_t max_iterations = 300;
  int64_t seed = 0;
};

/// Every dataset below `group` (links followed), by its path relative to the group.
std::vector<std::string> datasets_under(hid_t file, const std::string& group) {
  const h5::Id g = h5::open_group(file, group);
  std::vector<std::string> names;
  auto visit = [](hid_t loc, const char* name, const H5L_info_t*, void* data) -> herr_t {
    const h5::Id object = h5::try_open_object(loc, name);
    if (!object.valid()) return 0;  // a dangling soft or external link: not a feature
    if (H5Iget_type(object.get()) == H5I_DATASET) {
      static_cast<std::vector<std::string>*>(data)->push_back(name);
    }
    return 0;
  };
  HOLO_H5_CHECK(H5Lvisit(g.get(), H5_INDEX_NAME, H5_ITER_INC, visit, &names));
  return names;
}

std::optional<int64_t> integer_attribute(hid_t object, const char* name) {
  if (H5Aexists(object, name) <= 0) return std::nullopt;
  const h5::Id attr = h5::open_attribute(object, name);
  int64_t v = 0;
  HOLO_H5_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, &v));
  return v;
}

ClusterInput read_cluster_input(const ClusterArgs& a) {
  htri_t is_hdf5 = -1;
  H5E_BEGIN_TRY { is_hdf5 = H5Fis_hdf5(a.file.c_str()); }
  H5E_END_TRY;
  if (is_hdf5 <= 0) {
    throw IoError("cannot open feature file " + a.file + " (missing or not HDF5)");
  }
  const h5::Id file = h5::open_file(a.file, H5F_ACC_RDONLY);
  ClusterInput in;
  if (has_link(file.get(), a.dataset)) {
    // One matrix N x D; ids and labels in parallel datasets when present.
    const h5::Id ds = h5::open_dataset(file.get(), a.dataset);
    const auto dims = dims_of(ds.get());
    if (dims.size() != 2) {
      throw IoError(a.file + ": dataset '" + a.dataset + "' must be N x D, it has rank " +
                    std::to_string(dims.size()));
    }
    in.layout = "matrix '" + a.dataset + "'";
    in.features.rows = static_cast<int64_t>(dims[0]);
    in.features.cols = static_cast<int64_t>(dims[1]);
    in.features.values = read_floats(ds.get());
    if (has_link(file.get(), "ids")) in.ids = read_strings(file.get(), "ids");
    if (has_link(file.get(), a.labels_dataset)) {
      in.labels = read_ints(file.get(), a.labels_dataset);
      if (static_cast<int64_t>(in.labels.size()) != in.features.rows) {
        throw IoError(a.file + ": '" + a.labels_dataset + "' has " +
                      std::to_string(in.labels.size()) + " labels for " +
                      std::to_string(in.features.rows) + " feature rows");
      }
    }
  } else {
    // One dataset per video, named by its id: D (clip feature) or F x D (per-frame features,
    // averaged over frames); an integer attribute "label" gives the label.
    const std::string group =
        !a.group.empty() ? a.group : has_link(file.get(), "clips") ? "/clips" : "/";
    in.layout = "one dataset per video under '" + group + "'";
    bool all_labelled = true;
    for (const auto& name : datasets_under(file.get(), group)) {
      const std::string path = (group == "/" ? "/" : group + "/") + name;
      const h5::Id ds = h5::open_dataset(file.get(), path);
      const h5::Id type = h5::dataset_type(ds.get());
      if (H5Tget_class(type.get()) != H5T_FLOAT) continue;  // ids, indices, ...
      const auto dims = dims_of(ds.get());
      if (dims.empty() || dims.size() > 2 || dims.back() == 0) continue;
      const auto v = read_floats(ds.get());
      const int64_t d = static_cast<int64_t>(dims.back());
      const int64_t frames = dims.size() == 2 ? static_cast<int64_t>(dims[0]) : 1;
      if (in.features.cols == 0) in.features.cols = d;
      if (d != in.features.cols) {
        throw IoError(a.file + ": '" + path + "' has " + std::to_string(d) +
                      " features, the others " + std::to_string(in.features.cols));
      }
      if (frames == 0) continue;
      for (int64_t j = 0; j < d; ++j) {
        double s = 0.0;
        for (int64_t f = 0; f < frames; ++f) s += v[f * d + j];
        in.features.values.push_back(static_cast<float>(s / frames));
      }
      ++in.features.rows;
      in.ids.push_back(name);
      const auto label = integer_attribute(ds.get(), "label");
      all_labelled = all_labelled && label.has_value();
      in.labels.push_back(label.value_or(-1));
    }
    if (!all_labelled) in.labels.clear();
  }
  if (in.features.rows == 0) {
    throw IoError(a.file + ": no features found (neither an N x D dataset '" + a.dataset +
                  "' nor float datasets in the group of one dataset per video)");
  }
  return in;
}

/// Labels from a text file of "id label" or "id,label" lines; labels may be integers or class
/// names (numbered in sorted order).
std::vector<int64_t> labels_from_file(const std::string& path,
                                      const std::vector<std::string>& ids) {
  std::ifstream f(path);
  if (!f) throw IoError("cannot read labels file " + path);
  std::map<std::string, std::string> by_id;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream ss(line);
    std::string id, label;
    if (!(ss >> id)) continue;
    if (!(ss >> label)) {
      throw IoError(path + ":" + std::to_string(lineno) + ": expected 'id label'");
    }
    by_id[id] = label;
  }
  bool numeric = true;
  std::map<std::string, int64_t> names;
  for (const auto& [id, label] : by_id) {
    numeric = numeric && label.find_first_not_of("0123456789") == std::string::npos;
    names.emplace(label, 0);
  }
  int64_t next = 0;
  for (auto& [name, index] : names) index = next++;
  std::vector<int64_t> out;
  for (const auto& id : ids) {
    auto it = by_id.find(id);
    if (it == by_id.end()) throw IoError(path + ": no label for video '" + id + "'");
    out.push_back(numeric ? std::stoll(it->second) : names[it->second]);
  }
  return out;
}

void run_cluster(const ClusterArgs& a) {
  ClusterInput in = read_cluster_input(a);
  if (!a.labels_file.empty()) {
    if (in.ids.empty()) {
      throw UsageError(a.file + " has no video ids to match with --labels " + a.labels_file);
    }
    in.labels = labels_from_file(a.labels_file, in.ids);
  }
  const KMeansResult r =
      kmeans(in.features, KMeansOptions(a.k)
                              .set_restarts(a.restarts)
                              .set_max_iterations(a.max_iterations)
                              .set_seed(static_cast<uint64_t>(a.seed)));
  std::vector<int64_t> sizes(static_cast<size_t>(a.k), 0);
  for (int64_t c : r.assignments) ++sizes[c];

  std::cout << "features: " << a.file << " (" << in.layout << ")\n\n";
  TextTable t({"videos", "dim", "k", "classes", "clustering accuracy (%)", "NMI (%)", "inertia",
               "iterations"});
  std::string classes = "-";
  std::optional<double> accuracy, nmi;
  if (!in.labels.empty()) {
    std::vector<int64_t> distinct(in.labels);
    std::sort(distinct.begin(), distinct.end());
    classes = std::to_string(std::unique(distinct.begin(), distinct.end()) - distinct.begin());
    accuracy = clustering_accuracy(in.labels, r.assignments);
    nmi = normalized_mutual_info(in.labels, r.assignments);
  }
  t.add_row({std::to_string(in.features.rows), std::to_string(in.features.cols),
             std::to_string(a.k), classes, TextTable::percent(accuracy),
             TextTable::percent(nmi), TextTable::number(r.inertia, 3),
             std::to_string(r.iterations)});
  std::cout << t.str();
  if (in.labels.empty()) {
    std::cout << "\nno labels: give --labels FILE (id label per line) or store an integer "
                 "dataset '" << a.labels_dataset << "' (or a 'label' attribute per video)\n";
  }
  std::string sizes_text;
  for (size_t c = 0; c < sizes.size(); ++c) sizes_text += (c ? " " : "") + std::to_string(sizes[c]);
  std::cout << "\ncluster sizes: " << sizes_text << "\n";
  if (!a.assignments.empty()) {
    std::string csv = "id,label,cluster\n";
    for (int64_t i = 0; i < in.features.rows; ++i) {
      csv += (in.ids.empty() ? std::to_string(i) : in.ids[i]) + "," +
             (in.labels.empty() ? std::string() : std::to_string(in.labels[i])) + "," +
             std::to_string(r.assignments[i]) + "\n";
    }
    write_file_atomic(a.assignments, csv);
    std::cout << "assignments: " << a.assignments << "\n";
  }
}

}  // namespace

void add_report_commands(CLI::App& app) {
  auto run_dir = std::make_shared<std::string>();
  auto* plot = app.add_subcommand(
      "plot", "Draw a run's training curves (RUN_DIR/metrics.jsonl) to curves.svg and curves.png");
  plot->add_option("run_dir", *run_dir, "Run directory")->required();
  plot->callback([run_dir] {
    const CurveFiles files = write_curves(*run_dir);
    std::cout << "read " << files.records << " metric lines; " << files.panels << " panels\n";
    if (!files.constants.empty()) {
      std::string list;
      for (const auto& c : files.constants) list += (list.empty() ? "" : ", ") + c;
      std::cout << "not drawn, constant: " << list << "\n";
    }
    std::cout << "wrote " << files.svg << "\nwrote " << files.png << "\n";
  });

  auto args = std::make_shared<ClusterArgs>();
  auto* cluster = app.add_subcommand(
      "cluster", "k-means on extracted features, scored by clustering accuracy and NMI");
  cluster->add_option("features", args->file, "HDF5 feature file (holo extract --out)")
      ->required();
  cluster->add_option("--k", args->k, "Number of clusters (the number of classes)")
      ->required()
      ->check(CLI::PositiveNumber);
  cluster->add_option("--dataset", args->dataset,
                      "N x D dataset holding one row per video (else: one dataset per video)")
      ->capture_default_str();
  cluster->add_option("--group", args->group,
                      "Group holding one dataset per video (default: /clips when present, "
                      "as in a feature store's index.h5, else /)");
  cluster->add_option("--labels-dataset", args->labels_dataset,
                      "Integer dataset of labels parallel to --dataset")
      ->capture_default_str();
  cluster->add_option("--labels", args->labels_file,
                      "Text file of 'id label' lines (integer labels or class names)");
  cluster->add_option("--assignments", args->assignments,
                      "Write id,label,cluster for every video to this CSV file");
  cluster->add_option("--restarts", args->restarts, "k-means++ starts; the best inertia wins")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cluster->add_option("--max-iterations", args->max_iterations, "Lloyd iterations per start")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cluster->add_option("--seed", args->seed, "Seed of the k-means++ draws")->capture_default_str();
  cluster->callback([args] { run_cluster(*args); });
}

}  // namespace holo::cli
