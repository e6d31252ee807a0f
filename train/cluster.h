#pragma once
/// Clustering of extracted features (thesis 5.4.8: k-means on clip features with k = number of
/// classes, scored by clustering accuracy): k-means with k-means++ seeding, the Hungarian
/// algorithm, clustering accuracy and normalised mutual information. Plain C++, no LibTorch.

#include <cstdint>
#include <string>
#include <vector>

namespace holo {

/// A dense row-major matrix of float features, one row per sample.
struct FeatureMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> values;  ///< rows * cols

  const float* row(int64_t r) const { return values.data() + r * cols; }
};

struct KMeansOptions {
  explicit KMeansOptions(int64_t clusters) : k(clusters) {}
  int64_t k;                     ///< number of clusters (required, 1 <= k <= rows)
  int64_t restarts = 10;         ///< independent k-means++ starts; the one with the lowest inertia wins
  int64_t max_iterations = 300;  ///< Lloyd iterations per start at most
  /// Stop when the centroids move less than tolerance * (mean per-feature variance), summed
  /// squared, as scikit-learn's `tol`.
  double tolerance = 1e-4;
  uint64_t seed = 0;             ///< seed of every random draw; same data and seed give the same result

  KMeansOptions& set_restarts(int64_t v) { restarts = v; return *this; }
  KMeansOptions& set_max_iterations(int64_t v) { max_iterations = v; return *this; }
  KMeansOptions& set_seed(uint64_t v) { seed = v; return *this; }
};

struct KMeansResult {
  std::vector<int64_t> assignments;  ///< cluster of each row, in [0, k)
  FeatureMatrix centroids;           ///< k x cols
  double inertia = 0.0;              ///< sum of squared distances to the assigned centroid
  int64_t iterations = 0;            ///< Lloyd iterations of the winning start
};

/// Lloyd's k-means from k-means++ seeds (Arthur & Vassilvitskii 2007, with 2 + log k
/// candidates per pick as scikit-learn), deterministic for a seed. An emptied cluster is moved
/// to the point farthest from its centroid. Computation in double. Throws holo::Error when
/// k is outside [1, rows] or the matrix is empty.
KMeansResult kmeans(const FeatureMatrix& data, const KMeansOptions& options);

/// Minimum-cost assignment (Hungarian algorithm, O(n^2 m)) for a rows x cols cost matrix,
/// row-major, rows <= cols: returns the column of each row, all distinct. Throws holo::Error
/// when rows > cols or the sizes do not match.
std::vector<int64_t> hungarian(const std::vector<double>& cost, int64_t rows, int64_t cols);

/// Contingency counts: (number of distinct labels) x (number of distinct clusters), with the
/// sorted distinct values of each in `label_values` and `cluster_values`.
struct Contingency {
  std::vector<int64_t> label_values;
  std::vector<int64_t> cluster_values;
  std::vector<int64_t> counts;  ///< row = label, column = cluster
};
Contingency contingency(const std::vector<int64_t>& labels, const std::vector<int64_t>& clusters);

/// Clustering accuracy: the largest fraction of samples whose label equals the cluster's label
/// under a one-to-one matching of clusters to labels (found with the Hungarian algorithm).
double clustering_accuracy(const std::vector<int64_t>& labels,
                           const std::vector<int64_t>& clusters);

/// Normalised mutual information with the arithmetic-mean normaliser (scikit-learn's default):
/// I(U;V) / ((H(U) + H(V)) / 2); 1 when both are a single cluster.
double normalized_mutual_info(const std::vector<int64_t>& labels,
                              const std::vector<int64_t>& clusters);

}  // namespace holo
