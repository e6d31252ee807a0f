#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>

#include "core/error.h"
#include "tests/train/python_util.h"
#include "train/cluster.h"

namespace holo {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

double assignment_cost(const std::vector<double>& cost, int64_t cols,
                       const std::vector<int64_t>& column) {
  double c = 0.0;
  for (size_t r = 0; r < column.size(); ++r) c += cost[r * cols + column[r]];
  return c;
}

TEST(Hungarian, HandExample) {
  const std::vector<double> cost = {4, 1, 3,  //
                                    2, 0, 5,  //
                                    3, 2, 2};
  EXPECT_EQ(hungarian(cost, 3, 3), (std::vector<int64_t>{1, 0, 2}));
  // Two rows, three columns: row 0 -> 2, row 1 -> 0.
  EXPECT_EQ(hungarian({5, 9, 1, 2, 8, 3}, 2, 3), (std::vector<int64_t>{2, 0}));
  EXPECT_THAT([] { hungarian({1, 2}, 2, 1); },
              ThrowsMessage<Error>(HasSubstr("2 rows need at least as many columns")));
}

TEST(Hungarian, OptimalAgainstBruteForce) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> u(-20, 40);
  for (int trial = 0; trial < 30; ++trial) {
    const int64_t n = 2 + trial % 5;
    std::vector<double> cost(n * n);
    for (auto& c : cost) c = u(rng);
    const auto column = hungarian(cost, n, n);
    std::vector<int64_t> seen(column);
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    EXPECT_EQ(seen, perm);
    double best = 1e300;
    do {
      best = std::min(best, assignment_cost(cost, n, perm));
    } while (std::next_permutation(perm.begin(), perm.end()));
    EXPECT_DOUBLE_EQ(assignment_cost(cost, n, column), best) << "trial " << trial;
  }
}

TEST(Clustering, AccuracyAndNmiHandExample) {
  const std::vector<int64_t> labels = {0, 0, 1, 1, 2, 2};
  // Cluster ids are arbitrary: 1 <-> 0, 0 <-> 1, 7 <-> 2 agree on 5 of 6.
  const std::vector<int64_t> clusters = {1, 1, 0, 0, 0, 7};
  EXPECT_DOUBLE_EQ(clustering_accuracy(labels, clusters), 5.0 / 6);
  EXPECT_DOUBLE_EQ(clustering_accuracy(labels, {5, 5, 3, 3, 9, 9}), 1.0);
  EXPECT_NEAR(normalized_mutual_info(labels, {5, 5, 3, 3, 9, 9}), 1.0, 1e-12);
  // More clusters than labels: the extra cluster matches nothing.
  EXPECT_DOUBLE_EQ(clustering_accuracy({0, 0, 1, 1}, {0, 1, 2, 2}), 3.0 / 4);
  EXPECT_DOUBLE_EQ(normalized_mutual_info({0, 0, 0}, {4, 4, 4}), 1.0);
  EXPECT_DOUBLE_EQ(normalized_mutual_info({0, 1, 0, 1}, {0, 0, 1, 1}), 0.0);
  EXPECT_THAT([] { clustering_accuracy({0, 1}, {0}); },
              ThrowsMessage<Error>(HasSubstr("2 labels but 1 cluster assignments")));
}

TEST(Clustering, AccuracyAndNmiMatchScipyAndScikitLearn) {
  ASSERT_TRUE(testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string dir = testing::temp_dir();
  std::mt19937 rng(5);
  const int trials = 8, n = 120;
  std::vector<std::vector<int64_t>> labels(trials), clusters(trials);
  {
    std::ofstream f(dir + "/labels.txt");
    for (int t = 0; t < trials; ++t) {
      const int nl = 3 + t, nc = 2 + (t * 3) % 9;
      for (int i = 0; i < n; ++i) {
        labels[t].push_back(rng() % nl);
        // Half agree with a shuffled copy of the label, half are random.
        clusters[t].push_back(i % 2 ? (labels[t].back() * 5 + 1) % nc : rng() % nc);
        f << labels[t].back() << " " << clusters[t].back() << (i + 1 < n ? " " : "\n");
      }
    }
  }
  const std::string out = testing::run_python(dir, R"(
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
rows = np.loadtxt(')" + dir + R"(/labels.txt', dtype=np.int64)
with open(OUT, 'w') as f:
    for r in rows:
        y, c = r[0::2], r[1::2]
        m = contingency_matrix(y, c)
        i, j = linear_sum_assignment(-m)
        f.write('%.17g %.17g\n' % (m[i, j].sum() / len(y), normalized_mutual_info_score(y, c)))
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_EQ(ref.size(), 2u * trials) << out;
  for (int t = 0; t < trials; ++t) {
    EXPECT_NEAR(clustering_accuracy(labels[t], clusters[t]), ref[2 * t], 1e-12) << t;
    EXPECT_NEAR(normalized_mutual_info(labels[t], clusters[t]), ref[2 * t + 1], 1e-12) << t;
  }
}

/// `k` Gaussian blobs in `d` dimensions, `per` points each, centres far apart.
FeatureMatrix blobs(int64_t k, int64_t d, int64_t per, double spread, uint32_t seed,
                    std::vector<int64_t>& labels) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, static_cast<float>(spread));
  FeatureMatrix x;
  x.rows = k * per;
  x.cols = d;
  for (int64_t i = 0; i < x.rows; ++i) {
    const int64_t c = (i * 7) % k;  // interleaved, so order carries no information
    labels.push_back(c);
    for (int64_t j = 0; j < d; ++j) {
      x.values.push_back(static_cast<float>((j % k == c ? 10.0 : 0.0) + noise(rng)));
    }
  }
  return x;
}

TEST(KMeans, SeparatedBlobsRecoveredDeterministically) {
  std::vector<int64_t> labels;
  const FeatureMatrix x = blobs(4, 6, 30, 0.8, 1, labels);
  const KMeansResult a = kmeans(x, KMeansOptions(4).set_seed(42));
  EXPECT_DOUBLE_EQ(clustering_accuracy(labels, a.assignments), 1.0);
  EXPECT_NEAR(normalized_mutual_info(labels, a.assignments), 1.0, 1e-12);
  EXPECT_EQ(a.centroids.rows, 4);
  EXPECT_EQ(a.centroids.cols, 6);
  EXPECT_GE(a.iterations, 1);
  // Inertia equals the sum of squared distances to the assigned centroids.
  double inertia = 0.0;
  for (int64_t i = 0; i < x.rows; ++i) {
    for (int64_t j = 0; j < x.cols; ++j) {
      const double diff = x.row(i)[j] - a.centroids.row(a.assignments[i])[j];
      inertia += diff * diff;
    }
  }
  EXPECT_NEAR(a.inertia, inertia, 1e-6 * inertia);
  const KMeansResult b = kmeans(x, KMeansOptions(4).set_seed(42));
  EXPECT_EQ(a.assignments, b.assignments);
  EXPECT_EQ(a.inertia, b.inertia);
}

TEST(KMeans, InertiaMatchesScikitLearn) {
  ASSERT_TRUE(testing::have_reference_python()) << "/usr/bin/python3 (scripts/install-deps.sh) is missing";
  const std::string dir = testing::temp_dir();
  std::vector<int64_t> labels;
  // Overlapping blobs: k-means has to work, and the best of several starts is compared.
  const FeatureMatrix x = blobs(5, 8, 40, 3.0, 9, labels);
  {
    std::ofstream f(dir + "/x.txt");
    char buf[32];
    for (int64_t i = 0; i < x.rows; ++i) {
      for (int64_t j = 0; j < x.cols; ++j) {
        std::snprintf(buf, sizeof buf, "%.9g ", x.row(i)[j]);
        f << buf;
      }
      f << "\n";
    }
  }
  const std::string out = testing::run_python(dir, R"(
import numpy as np
from sklearn.cluster import KMeans
x = np.loadtxt(')" + dir + R"(/x.txt')
km = KMeans(n_clusters=5, n_init=20, random_state=0, algorithm='lloyd').fit(x)
with open(OUT, 'w') as f:
    f.write('%.17g\n' % km.inertia_)
)");
  const auto ref = testing::parse_numbers(out);
  ASSERT_EQ(ref.size(), 1u) << out;
  const KMeansResult r = kmeans(x, KMeansOptions(5).set_restarts(20).set_seed(0));
  // Both find the same (best known) local optimum on this data.
  EXPECT_NEAR(r.inertia, ref[0], 1e-6 * ref[0]);
}

TEST(KMeans, BadInputs) {
  FeatureMatrix x{3, 2, {0, 0, 1, 1, 2, 2}};
  EXPECT_THAT([&] { kmeans(x, KMeansOptions(4)); },
              ThrowsMessage<Error>(HasSubstr("k = 4 must be between 1 and the number of samples (3)")));
  // k = rows: every point its own cluster, inertia 0.
  const auto r = kmeans(x, KMeansOptions(3));
  EXPECT_EQ(r.inertia, 0.0);
  std::vector<int64_t> sorted(r.assignments);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2}));
  // Identical points: fewer distinct clusters than k, still a valid answer.
  FeatureMatrix same{3, 2, {1, 1, 1, 1, 1, 1}};
  const auto s = kmeans(same, KMeansOptions(2));
  EXPECT_EQ(s.inertia, 0.0);
  for (int64_t a : s.assignments) EXPECT_TRUE(a == 0 || a == 1);
  x.values[3] = std::nanf("");
  EXPECT_THAT([&] { kmeans(x, KMeansOptions(2)); },
              ThrowsMessage<Error>(HasSubstr("NaN or infinite")));
}

}  // namespace
}  // namespace holo
