#pragma once

#include "actors/sched/switch_policy.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

namespace aeg::sched {

/// Least squares of y on a few features plus a constant, over a sliding window of samples:
/// y ≈ w0 + Σ w_k x_k. Deterministic; small (3 to 4 unknowns).
template <std::size_t Features>
class linear_fit {
public:
  using features = std::array<double, Features>;

  /// Starts from `weights` (w0, w1, ...) until enough samples arrive to fit; keeps the last
  /// `window` samples. Refitted on every sample until the window has filled, then once every 8
  /// samples, so the fit may lag up to 7 samples. The fit is what those refits give, whenever
  /// it is read; the arithmetic runs when it is read (see `settle`).
  explicit linear_fit(std::array<double, Features + 1> weights, std::size_t window = 256)
      : weights_(weights), window_(window) {}

  void add(const features& x, double y);
  double predict(const features& x) const;
  const std::array<double, Features + 1>& weights() const;
  std::size_t num_samples() const noexcept { return std::min(added_, window_); }

private:
  using sample = std::pair<features, double>;
  using sample_iter = typename std::vector<sample>::const_iterator;
  // A refit that was due: the window of `len` samples ending before the `end`-th sample added.
  struct due_fit {
    std::size_t end, len;
  };
  // The fit of one window from the weights before it; false when it kept them all (collinear).
  // `varied`: the features it fitted (the others kept their weights).
  template <class PerCount>
  static bool fit(sample_iter first, sample_iter last, std::array<double, Features + 1>& w,
                  std::array<bool, Features>& varied, PerCount per_count);
  static bool fit(sample_iter first, sample_iter last, std::array<double, Features + 1>& w,
                  std::array<bool, Features>& varied);
  sample_iter at(std::size_t index) const {
    return samples_.begin() + static_cast<std::ptrdiff_t>(head_ + index - base_);
  }
  // Runs the refits that are due, to the bit as running each when due would have.
  void settle() const;

  mutable std::array<double, Features + 1> weights_; // after the refits settled
  std::size_t unfitted_ = 0;                         // samples added since the last refit was due
  std::size_t window_;
  std::size_t added_ = 0; // samples ever added
  // From samples_[head_]: the window, and as much before it as due refits need. Contiguous (a
  // refit reads four passes over it); dropped samples are compacted away in bulk.
  std::vector<sample> samples_;
  std::size_t head_ = 0;
  std::size_t base_ = 0;             // the index of samples_[head_] among those ever added
  mutable std::vector<due_fit> due_; // refits due and not yet run, oldest first
};

/// Decode step time: a + b·(tokens in the batch's contexts) + c·(sequences in the batch).
class decode_estimator {
public:
  decode_estimator(double a = 0.02, double b = 1e-6, double c = 1e-4) : fit_({a, b, c}) {}
  void add(std::size_t context_tokens, std::size_t batch, seconds measured) {
    fit_.add({static_cast<double>(context_tokens), static_cast<double>(batch)}, measured.count());
  }
  seconds predict(std::size_t context_tokens, std::size_t batch) const;

private:
  linear_fit<2> fit_;
};

/// Prefill time: a + b·(prompt tokens) + c·(Σ prompt length²) (attention is quadratic).
class prefill_estimator {
public:
  prefill_estimator(double a = 0.02, double b = 1e-4, double c = 1e-8) : fit_({a, b, c}) {}
  void add(std::size_t tokens, double sum_squares, seconds measured) {
    fit_.add({static_cast<double>(tokens), sum_squares}, measured.count());
  }
  seconds predict(std::size_t tokens, double sum_squares) const;

private:
  linear_fit<2> fit_;
};

/// Switch time: bytes to move over a bandwidth, times a correction learned from the switches
/// measured (the paper's profiled factor).
class switch_estimator {
public:
  explicit switch_estimator(double bytes_per_second = 16e9) : bandwidth_(bytes_per_second) {}
  void add(std::size_t bytes, seconds measured);
  seconds predict(std::size_t bytes) const;
  double correction() const noexcept { return correction_; }
  /// The rate the prediction assumes: the prior bandwidth over the learned correction.
  double bytes_per_second() const noexcept { return bandwidth_ / correction_; }
  std::size_t samples() const noexcept { return samples_; }

private:
  double bandwidth_;
  double correction_ = 1.0;
  std::size_t samples_ = 0;
};

} // namespace aeg::sched
