#include "actors/sched/estimators.hpp"

#include <algorithm>
#include <cmath>

namespace aeg::sched {

template <std::size_t F>
void linear_fit<F>::add(const features& x, double y) {
  samples_.emplace_back(x, y);
  if (samples_.size() > window_)
    samples_.pop_front();
  if (samples_.size() >= 2 * (F + 1))
    refit();
}

template <std::size_t F>
double linear_fit<F>::predict(const features& x) const {
  double y = weights_[0];
  for (std::size_t k = 0; k < F; ++k)
    y += weights_[k + 1] * x[k];
  return y;
}

// Normal equations (XᵀX) w = Xᵀy, solved by Gaussian elimination with partial pivoting. A
// singular system (features that never varied) keeps the previous weights for what it cannot
// determine: it is only refitted when every pivot is usable.
template <std::size_t F>
void linear_fit<F>::refit() {
  constexpr std::size_t n = F + 1;
  double a[n][n + 1] = {};
  for (const auto& [x, y] : samples_) {
    double row[n];
    row[0] = 1;
    for (std::size_t k = 0; k < F; ++k)
      row[k + 1] = x[k];
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j)
        a[i][j] += row[i] * row[j];
      a[i][n] += row[i] * y;
    }
  }
  for (std::size_t col = 0; col < n; ++col) {
    std::size_t pivot = col;
    for (std::size_t r = col + 1; r < n; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[pivot][col]))
        pivot = r;
    if (std::fabs(a[pivot][col]) < 1e-12 * (1 + std::fabs(a[col][col])))
      return; // not determined by the samples yet
    for (std::size_t j = 0; j <= n; ++j)
      std::swap(a[col][j], a[pivot][j]);
    for (std::size_t r = 0; r < n; ++r) {
      if (r == col)
        continue;
      const double f = a[r][col] / a[col][col];
      for (std::size_t j = col; j <= n; ++j)
        a[r][j] -= f * a[col][j];
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    weights_[i] = a[i][n] / a[i][i];
}

template class linear_fit<2>;

seconds decode_estimator::predict(std::size_t context_tokens, std::size_t batch) const {
  return seconds{std::max(
      1e-6, fit_.predict({static_cast<double>(context_tokens), static_cast<double>(batch)}))};
}

seconds prefill_estimator::predict(std::size_t tokens, double sum_squares) const {
  return seconds{std::max(1e-6, fit_.predict({static_cast<double>(tokens), sum_squares}))};
}

void switch_estimator::add(std::size_t bytes, seconds measured) {
  if (bytes == 0)
    return;
  const double ratio = measured.count() / (static_cast<double>(bytes) / bandwidth_);
  // A running mean of measured / predicted.
  correction_ =
      (correction_ * static_cast<double>(samples_) + ratio) / static_cast<double>(samples_ + 1);
  ++samples_;
}

seconds switch_estimator::predict(std::size_t bytes) const {
  return seconds{static_cast<double>(bytes) / bandwidth_ * correction_};
}

} // namespace aeg::sched
