#include "actors/sched/estimators.hpp"

#include <algorithm>
#include <cmath>

namespace aeg::sched {

// Refitted as samples arrive: at every sample until the window has filled, then once every 8
// (a refit walks the whole window). The fit never depends on when, or whether, it is read, so a
// caller that skips reading it (an instance that reuses a held decision) changes nothing.
template <std::size_t F>
void linear_fit<F>::add(const features& x, double y) {
  constexpr std::size_t every = 8;
  samples_.emplace_back(x, y);
  if (samples_.size() > window_)
    samples_.pop_front();
  if (samples_.size() >= 2 * (F + 1) && (++unfitted_ >= every || samples_.size() < window_)) {
    unfitted_ = 0;
    refit();
  }
}

template <std::size_t F>
const std::array<double, F + 1>& linear_fit<F>::weights() const {
  return weights_;
}

template <std::size_t F>
double linear_fit<F>::predict(const features& x) const {
  double y = weights_[0];
  for (std::size_t k = 0; k < F; ++k)
    y += weights_[k + 1] * x[k];
  return y;
}

// Least squares on standardized features: each feature is centred and scaled by its spread
// before the normal equations are formed, so features of very different magnitudes (a constant,
// a token count, a sum of squared lengths near 1e8) give a well-conditioned system. A feature
// that has not varied in the window cannot be told apart from the constant: it keeps its
// current weight and the others are fitted around it (decode steps that were all of batch 1 still
// learn the per-token cost). Collinear features (one varying only with another) keep the
// previous weights until the samples separate them.
//
// A count that is a power of two (a full window: 256 by default) divides as its inverse
// multiplies, to the bit: either way one exact scaling, rounded once (the product is its own
// expression, never fused into the sum it joins). Several times cheaper.
template <std::size_t F>
void linear_fit<F>::refit() {
  const std::size_t len = samples_.size();
  if ((len & (len - 1)) == 0)
    refit_with([inv = 1.0 / static_cast<double>(len)](double x) { return x * inv; });
  else
    refit_with([count = static_cast<double>(len)](double x) { return x / count; });
}

template <std::size_t F>
template <class PerCount>
void linear_fit<F>::refit_with(PerCount per_count) {
  const double count = static_cast<double>(samples_.size());
  std::array<double, F> mean{}, spread{};
  for (const auto& [x, y] : samples_)
    for (std::size_t k = 0; k < F; ++k)
      mean[k] += per_count(x[k]);
  for (const auto& [x, y] : samples_)
    for (std::size_t k = 0; k < F; ++k)
      spread[k] += per_count((x[k] - mean[k]) * (x[k] - mean[k]));
  std::array<std::size_t, F> fitted{}; // the features that varied
  std::array<bool, F> varied{};
  std::size_t n = 0;
  for (std::size_t k = 0; k < F; ++k) {
    spread[k] = std::sqrt(spread[k]);
    varied[k] = spread[k] > 1e-9 * (1 + std::fabs(mean[k]));
    if (varied[k])
      fitted[n++] = k;
  }
  // What the fitted features and the constant must explain: y less the fixed features' share.
  auto target = [&](const features& x, double y) {
    for (std::size_t k = 0; k < F; ++k)
      if (!varied[k])
        y -= weights_[k + 1] * x[k];
    return y;
  };
  double mean_y = 0;
  for (const auto& [x, y] : samples_)
    mean_y += per_count(target(x, y));
  // (ZᵀZ) b = Zᵀ(y - ȳ) over the standardized fitted features z.
  double a[F][F + 1] = {};
  for (const auto& [x, y] : samples_) {
    double z[F];
    for (std::size_t i = 0; i < n; ++i)
      z[i] = (x[fitted[i]] - mean[fitted[i]]) / spread[fitted[i]];
    const double r = target(x, y) - mean_y;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j)
        a[i][j] += z[i] * z[j];
      a[i][n] += z[i] * r;
    }
  }
  // Gaussian elimination with partial pivoting. The diagonal is `count` before elimination;
  // a pivot far below it means the features are collinear.
  for (std::size_t col = 0; col < n; ++col) {
    std::size_t pivot = col;
    for (std::size_t r = col + 1; r < n; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[pivot][col]))
        pivot = r;
    if (std::fabs(a[pivot][col]) < 1e-9 * count)
      return;
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
  double intercept = mean_y;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = fitted[i];
    weights_[k + 1] = a[i][n] / a[i][i] / spread[k];
    intercept -= weights_[k + 1] * mean[k];
  }
  weights_[0] = intercept;
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
