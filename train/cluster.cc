#include "train/cluster.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "core/error.h"

namespace holo {
namespace {

/// Uniform double in [0, 1) from 53 random bits: the same on every standard library, unlike
/// std::uniform_real_distribution.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

double squared_distance(const float* a, const double* c, int64_t d) {
  double s = 0.0;
  for (int64_t j = 0; j < d; ++j) {
    const double diff = static_cast<double>(a[j]) - c[j];
    s += diff * diff;
  }
  return s;
}

/// Index i with cumulative[i-1] <= u < cumulative[i] (the draw of a weighted choice).
int64_t weighted_pick(const std::vector<double>& weights, double total, std::mt19937_64& rng) {
  const double u = uniform01(rng) * total;
  double acc = 0.0;
  for (size_t i = 0; i < weights.size(); ++i) {
    acc += weights[i];
    if (u < acc) return static_cast<int64_t>(i);
  }
  // Rounding left u at the very end: the last point with a positive weight.
  for (size_t i = weights.size(); i-- > 0;) {
    if (weights[i] > 0) return static_cast<int64_t>(i);
  }
  return static_cast<int64_t>(weights.size()) - 1;
}

/// k-means++ seeding, greedy variant: 2 + floor(ln k) candidates per centre, keep the one that
/// lowers the potential most.
std::vector<double> kmeans_plus_plus(const FeatureMatrix& x, int64_t k, std::mt19937_64& rng) {
  const int64_t n = x.rows, d = x.cols;
  std::vector<double> centres(static_cast<size_t>(k * d));
  auto set_centre = [&](int64_t c, int64_t row) {
    for (int64_t j = 0; j < d; ++j) centres[c * d + j] = x.row(row)[j];
  };
  const int64_t first = std::min<int64_t>(n - 1, static_cast<int64_t>(uniform01(rng) * n));
  set_centre(0, first);
  std::vector<double> closest(static_cast<size_t>(n));
  double potential = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    closest[i] = squared_distance(x.row(i), centres.data(), d);
    potential += closest[i];
  }
  const int64_t trials = 2 + static_cast<int64_t>(std::log(static_cast<double>(k)));
  std::vector<double> candidate_closest(static_cast<size_t>(n));
  std::vector<double> best_closest(static_cast<size_t>(n));
  std::vector<double> row_as_double(static_cast<size_t>(d));
  for (int64_t c = 1; c < k; ++c) {
    int64_t best_row = -1;
    double best_potential = std::numeric_limits<double>::infinity();
    for (int64_t t = 0; t < trials; ++t) {
      // All points identical to the centres chosen so far: any point will do.
      const int64_t row = potential > 0 ? weighted_pick(closest, potential, rng)
                                        : static_cast<int64_t>(uniform01(rng) * n) % n;
      for (int64_t j = 0; j < d; ++j) row_as_double[j] = x.row(row)[j];
      double p = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        candidate_closest[i] =
            std::min(closest[i], squared_distance(x.row(i), row_as_double.data(), d));
        p += candidate_closest[i];
      }
      if (p < best_potential) {
        best_potential = p;
        best_row = row;
        best_closest.swap(candidate_closest);
      }
    }
    set_centre(c, best_row);
    closest.swap(best_closest);
    potential = best_potential;
  }
  return centres;
}

/// Assigns every row to its nearest centre (lowest index on ties); returns the inertia and
/// fills each row's squared distance.
double assign(const FeatureMatrix& x, const std::vector<double>& centres, int64_t k,
              std::vector<int64_t>& labels, std::vector<double>& distances) {
  const int64_t d = x.cols;
  double inertia = 0.0;
  for (int64_t i = 0; i < x.rows; ++i) {
    int64_t best = 0;
    double best_d = std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < k; ++c) {
      const double dist = squared_distance(x.row(i), centres.data() + c * d, d);
      if (dist < best_d) {
        best_d = dist;
        best = c;
      }
    }
    labels[i] = best;
    distances[i] = best_d;
    inertia += best_d;
  }
  return inertia;
}

/// Means of the assigned rows; an empty cluster takes the row farthest from its centre among
/// clusters that keep at least one other row.
std::vector<double> update_centres(const FeatureMatrix& x, int64_t k,
                                   std::vector<int64_t>& labels, std::vector<double>& distances) {
  const int64_t d = x.cols;
  std::vector<double> centres(static_cast<size_t>(k * d), 0.0);
  std::vector<int64_t> sizes(static_cast<size_t>(k), 0);
  for (int64_t i = 0; i < x.rows; ++i) ++sizes[labels[i]];
  for (int64_t c = 0; c < k; ++c) {
    if (sizes[c] > 0) continue;
    int64_t far = -1;
    for (int64_t i = 0; i < x.rows; ++i) {
      if (sizes[labels[i]] > 1 && (far < 0 || distances[i] > distances[far])) far = i;
    }
    if (far < 0) break;  // fewer distinct rows than clusters; cannot happen when k <= rows
    --sizes[labels[far]];
    labels[far] = c;
    distances[far] = 0.0;
    sizes[c] = 1;
  }
  for (int64_t i = 0; i < x.rows; ++i) {
    double* c = centres.data() + labels[i] * d;
    const float* r = x.row(i);
    for (int64_t j = 0; j < d; ++j) c[j] += r[j];
  }
  for (int64_t c = 0; c < k; ++c) {
    if (sizes[c] == 0) continue;
    for (int64_t j = 0; j < d; ++j) centres[c * d + j] /= static_cast<double>(sizes[c]);
  }
  return centres;
}

}  // namespace

KMeansResult kmeans(const FeatureMatrix& x, const KMeansOptions& options) {
  const int64_t n = x.rows, d = x.cols, k = options.k;
  if (n <= 0 || d <= 0 || static_cast<int64_t>(x.values.size()) != n * d) {
    throw Error("k-means: need a non-empty feature matrix, got " + std::to_string(n) + " x " +
                std::to_string(d) + " with " + std::to_string(x.values.size()) + " values");
  }
  if (k < 1 || k > n) {
    throw Error("k-means: k = " + std::to_string(k) + " must be between 1 and the number of " +
                "samples (" + std::to_string(n) + ")");
  }
  for (float v : x.values) {
    if (!std::isfinite(v)) throw Error("k-means: the features hold a NaN or infinite value");
  }
  // Absolute tolerance: tol times the mean per-feature variance (scikit-learn's _tolerance).
  double mean_variance = 0.0;
  for (int64_t j = 0; j < d; ++j) {
    double mean = 0.0, sq = 0.0;
    for (int64_t i = 0; i < n; ++i) mean += x.row(i)[j];
    mean /= n;
    for (int64_t i = 0; i < n; ++i) sq += (x.row(i)[j] - mean) * (x.row(i)[j] - mean);
    mean_variance += sq / n;
  }
  const double tol = options.tolerance * mean_variance / d;

  KMeansResult best;
  best.inertia = std::numeric_limits<double>::infinity();
  for (int64_t start = 0; start < std::max<int64_t>(1, options.restarts); ++start) {
    std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(start));
    std::vector<double> centres = kmeans_plus_plus(x, k, rng);
    std::vector<int64_t> labels(static_cast<size_t>(n)), next(static_cast<size_t>(n));
    std::vector<double> distances(static_cast<size_t>(n));
    double inertia = assign(x, centres, k, labels, distances);
    int64_t iterations = 0;
    for (int64_t it = 1; it <= options.max_iterations; ++it) {
      std::vector<double> moved = update_centres(x, k, labels, distances);
      double shift = 0.0;
      for (size_t j = 0; j < moved.size(); ++j) shift += (moved[j] - centres[j]) * (moved[j] - centres[j]);
      centres.swap(moved);
      inertia = assign(x, centres, k, next, distances);
      iterations = it;
      const bool same = next == labels;
      labels.swap(next);
      if (same || shift <= tol) break;
    }
    if (inertia < best.inertia) {
      best.inertia = inertia;
      best.assignments = labels;
      best.iterations = iterations;
      best.centroids.rows = k;
      best.centroids.cols = d;
      best.centroids.values.assign(centres.begin(), centres.end());
    }
  }
  return best;
}

std::vector<int64_t> hungarian(const std::vector<double>& cost, int64_t rows, int64_t cols) {
  if (rows > cols) {
    throw Error("hungarian: " + std::to_string(rows) + " rows need at least as many columns, got " +
                std::to_string(cols));
  }
  HOLO_CHECK(static_cast<int64_t>(cost.size()) == rows * cols,
             "hungarian: cost matrix size does not match rows x cols");
  // Potentials u (rows) and v (columns); p[j] = row matched to column j (1-based, 0 = none);
  // column 0 is a virtual start. Each row is added by a shortest augmenting path (Dijkstra on
  // reduced costs), keeping every reduced cost non-negative.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(rows + 1, 0.0), v(cols + 1, 0.0);
  std::vector<int64_t> p(cols + 1, 0), way(cols + 1, 0);
  for (int64_t i = 1; i <= rows; ++i) {
    p[0] = i;
    int64_t j0 = 0;
    std::vector<double> minv(cols + 1, inf);
    std::vector<char> used(cols + 1, 0);
    do {
      used[j0] = 1;
      const int64_t i0 = p[j0];
      double delta = inf;
      int64_t j1 = 0;
      for (int64_t j = 1; j <= cols; ++j) {
        if (used[j]) continue;
        const double cur = cost[(i0 - 1) * cols + (j - 1)] - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int64_t j = 0; j <= cols; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int64_t j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int64_t> column(static_cast<size_t>(rows), -1);
  for (int64_t j = 1; j <= cols; ++j) {
    if (p[j] != 0) column[p[j] - 1] = j - 1;
  }
  return column;
}

Contingency contingency(const std::vector<int64_t>& labels, const std::vector<int64_t>& clusters) {
  if (labels.size() != clusters.size()) {
    throw Error("clustering: " + std::to_string(labels.size()) + " labels but " +
                std::to_string(clusters.size()) + " cluster assignments");
  }
  Contingency c;
  c.label_values = labels;
  c.cluster_values = clusters;
  for (auto* v : {&c.label_values, &c.cluster_values}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
  auto index = [](const std::vector<int64_t>& values, int64_t x) {
    return static_cast<int64_t>(std::lower_bound(values.begin(), values.end(), x) - values.begin());
  };
  const int64_t nc = static_cast<int64_t>(c.cluster_values.size());
  c.counts.assign(c.label_values.size() * c.cluster_values.size(), 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    ++c.counts[index(c.label_values, labels[i]) * nc + index(c.cluster_values, clusters[i])];
  }
  return c;
}

double clustering_accuracy(const std::vector<int64_t>& labels,
                           const std::vector<int64_t>& clusters) {
  const Contingency c = contingency(labels, clusters);
  if (labels.empty()) return 0.0;
  const int64_t nl = static_cast<int64_t>(c.label_values.size());
  const int64_t nc = static_cast<int64_t>(c.cluster_values.size());
  // Square cost matrix (padding with zero-count rows or columns) of negated counts: the
  // minimum-cost matching is the matching with the most agreeing samples.
  const int64_t n = std::max(nl, nc);
  std::vector<double> cost(static_cast<size_t>(n * n), 0.0);
  for (int64_t l = 0; l < nl; ++l) {
    for (int64_t k = 0; k < nc; ++k) cost[l * n + k] = -static_cast<double>(c.counts[l * nc + k]);
  }
  const std::vector<int64_t> match = hungarian(cost, n, n);
  int64_t agree = 0;
  for (int64_t l = 0; l < nl; ++l) {
    if (match[l] < nc) agree += c.counts[l * nc + match[l]];
  }
  return static_cast<double>(agree) / static_cast<double>(labels.size());
}

double normalized_mutual_info(const std::vector<int64_t>& labels,
                              const std::vector<int64_t>& clusters) {
  const Contingency c = contingency(labels, clusters);
  const size_t nl = c.label_values.size(), nc = c.cluster_values.size();
  if ((nl == 1 && nc == 1) || labels.empty()) return 1.0;
  const double n = static_cast<double>(labels.size());
  std::vector<double> a(nl, 0.0), b(nc, 0.0);
  for (size_t l = 0; l < nl; ++l) {
    for (size_t k = 0; k < nc; ++k) {
      a[l] += c.counts[l * nc + k];
      b[k] += c.counts[l * nc + k];
    }
  }
  double mi = 0.0;
  for (size_t l = 0; l < nl; ++l) {
    for (size_t k = 0; k < nc; ++k) {
      const double nij = c.counts[l * nc + k];
      if (nij > 0) mi += nij / n * std::log(n * nij / (a[l] * b[k]));
    }
  }
  if (mi <= 0.0) return 0.0;
  auto entropy = [n](const std::vector<double>& counts) {
    double h = 0.0;
    for (double x : counts) {
      if (x > 0) h -= x / n * std::log(x / n);
    }
    return h;
  };
  return mi / (0.5 * (entropy(a) + entropy(b)));
}

}  // namespace holo
