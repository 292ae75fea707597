// Helpers shared by the benchmark drivers.
#pragma once

#include <algorithm>
#include <vector>

namespace xtm::bench {

// The p-th quantile (0..1) of v; reorders v. 0 for an empty v.
inline double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

// The round whose `field` is the median of the rounds.
template <typename R>
R MedianBy(std::vector<R> rounds, double R::*field) {
  std::sort(rounds.begin(), rounds.end(), [field](const R& a, const R& b) { return a.*field < b.*field; });
  return rounds[rounds.size() / 2];
}

}  // namespace xtm::bench
