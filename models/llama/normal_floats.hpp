#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace aeg::models {

/// Normal floats drawn from a `std::mt19937_64` exactly as libstdc++'s
/// `std::normal_distribution<float>` draws them (Marsaglia's polar method, the second value of
/// each pair kept for the next draw), value for value, at a fraction of its cost: libstdc++'s
/// `generate_canonical` takes two long-double logarithms for every uniform number, which made
/// them most of the time spent filling a synthetic model's weights. Synthetic weights stay the
/// same to the bit (`NormalFloats` tests hold the two against each other).
class normal_floats {
public:
  /// Draws of mean `mean` and standard deviation `stddev` from an engine seeded with `seed`.
  normal_floats(std::uint64_t seed, float mean, float stddev)
      : rng_(seed), mean_(mean), stddev_(stddev) {}

  /// The next draw.
  float operator()() {
    float ret;
    if (saved_available_) {
      saved_available_ = false;
      ret = saved_;
    } else {
      // The expressions keep libstdc++'s types: doubles in the subtractions and comparisons,
      // floats elsewhere, so that every rounding is the same.
      float x, y, r2;
      do {
        x = float(2.0) * canonical() - 1.0;
        y = float(2.0) * canonical() - 1.0;
        r2 = x * x + y * y;
      } while (r2 > 1.0 || r2 == 0.0);
      const float mult = std::sqrt(-2 * std::log(r2) / r2);
      saved_ = x * mult;
      saved_available_ = true;
      ret = y * mult;
    }
    ret = ret * stddev_ + mean_;
    return ret;
  }

private:
  // A uniform float in [0, 1) from one 64-bit draw: libstdc++'s generate_canonical<float, 24>,
  // its constants computed once.
  float canonical() {
    static_assert(std::mt19937_64::min() == 0 && std::mt19937_64::max() == ~0ull);
    const float ret = float(rng_()) / 18446744073709551616.0f; // 2^64
    return ret >= float(1) ? std::nextafter(float(1), float(0)) : ret;
  }

  std::mt19937_64 rng_;
  float mean_, stddev_;
  float saved_ = 0;
  bool saved_available_ = false;
};

} // namespace aeg::models
