#include "actors/sched/estimators.hpp"

#include <algorithm>
#include <cmath>
#include <ranges>

namespace aeg::sched {

// A refit is due at every sample until the window has filled, then at every 8th: when, and
// over which samples, never depends on reads. It runs when the fit is read (few readers read at
// every step), or once due refits would hold more than `slack` samples before the window.
template <std::size_t F>
void linear_fit<F>::add(const features& x, double y) {
  constexpr std::size_t every = 8, slack = 64;
  samples_.emplace_back(x, y);
  ++added_;
  const std::size_t in_window = num_samples();
  if (in_window >= 2 * (F + 1) && (++unfitted_ >= every || in_window < window_)) {
    unfitted_ = 0;
    due_.push_back({added_, in_window});
  }
  if (!due_.empty() && added_ - (due_.front().end - due_.front().len) > window_ + slack)
    settle();
  const std::size_t keep_from =
      due_.empty() ? added_ - in_window : due_.front().end - due_.front().len;
  if (keep_from > base_) {
    head_ += keep_from - base_;
    base_ = keep_from;
  }
  if (head_ > samples_.size() / 2) { // amortized: each sample moves about once
    samples_.erase(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

// The last due refit reads the weights before it only for the features it does not fit (all of
// them when it fits none: collinear). A feature with one value in every due window is fitted by
// none of them, so its weight is the one settled before: the last refit alone then gives what
// running each in turn would. Otherwise each runs in turn.
template <std::size_t F>
void linear_fit<F>::settle() const {
  if (due_.empty())
    return;
  const due_fit& last = due_.back();
  auto w = weights_;
  std::array<bool, F> varied{};
  bool alone = fit(at(last.end - last.len), at(last.end), w, varied);
  const auto from = at(due_.front().end - due_.front().len), to = at(last.end);
  for (std::size_t k = 0; k < F && alone; ++k)
    alone = varied[k] ||
            std::all_of(from, to, [&](const sample& s) { return s.first[k] == from->first[k]; });
  if (alone)
    weights_ = w;
  else
    for (const due_fit& d : due_)
      (void)fit(at(d.end - d.len), at(d.end), weights_, varied);
  due_.clear();
}

template <std::size_t F>
const std::array<double, F + 1>& linear_fit<F>::weights() const {
  settle();
  return weights_;
}

template <std::size_t F>
double linear_fit<F>::predict(const features& x) const {
  weights();
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
bool linear_fit<F>::fit(sample_iter first, sample_iter last, std::array<double, F + 1>& w,
                        std::array<bool, F>& varied) {
  const auto len = static_cast<std::size_t>(last - first);
  if ((len & (len - 1)) == 0)
    return fit(first, last, w, varied,
               [inv = 1.0 / static_cast<double>(len)](double x) { return x * inv; });
  return fit(first, last, w, varied,
             [count = static_cast<double>(len)](double x) { return x / count; });
}

template <std::size_t F>
template <class PerCount>
bool linear_fit<F>::fit(sample_iter first, sample_iter last, std::array<double, F + 1>& w,
                        std::array<bool, F>& varied, PerCount per_count) {
  const auto samples = std::ranges::subrange(first, last);
  const double count = static_cast<double>(last - first);
  std::array<double, F> mean{}, spread{};
  for (const auto& [x, y] : samples)
    for (std::size_t k = 0; k < F; ++k)
      mean[k] += per_count(x[k]);
  for (const auto& [x, y] : samples)
    for (std::size_t k = 0; k < F; ++k)
      spread[k] += per_count((x[k] - mean[k]) * (x[k] - mean[k]));
  std::array<std::size_t, F> fitted{}; // the features that varied
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
        y -= w[k + 1] * x[k];
    return y;
  };
  double mean_y = 0;
  for (const auto& [x, y] : samples)
    mean_y += per_count(target(x, y));
  // (ZᵀZ) b = Zᵀ(y - ȳ) over the standardized fitted features z.
  double a[F][F + 1] = {};
  for (const auto& [x, y] : samples) {
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
      return false;
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
    w[k + 1] = a[i][n] / a[i][i] / spread[k];
    intercept -= w[k + 1] * mean[k];
  }
  w[0] = intercept;
  return true;
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
