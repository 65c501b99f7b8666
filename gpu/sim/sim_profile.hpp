#pragma once

#include "coro/error.hpp"

#include <cstddef>
#include <map>
#include <span>
#include <string>

namespace aeg::gpu {

/// Seconds as `a + b·x + c·y`: the step-time fits of DistServe's form that the paper's artifact
/// uses (prefill: x = tokens, y = Σ len²; decode: x = context tokens, y = batch size).
struct linear_cost {
  double a = 0, b = 0, c = 0;
  double at(double x, double y) const noexcept { return a + b * x + c * y; }
};

/// One measured step: it took `seconds` at the features `x` and `y` of a `linear_cost`.
struct cost_sample {
  double x = 0, y = 0, seconds = 0;
};

/// The `linear_cost` through `samples` with the least squared relative error, every term >= 0.
/// Relative, because a profile costs steps from a few tokens to thousands: a fit of absolute
/// seconds follows the longest steps and may miss short ones by more than their own time (an
/// intercept below zero made short prompts free). Non-negative, because no part of a step takes
/// negative time. Needs three samples or more, every `seconds` > 0 and finite.
result<linear_cost> fit_relative(std::span<const cost_sample> samples);
/// The largest relative error of `c` over `samples` (0.1: one step 10% off).
double worst_relative_error(const linear_cost& c, std::span<const cost_sample> samples);

/// Measured (or published) step times of one model shape on one GPU.
struct sim_model_fit {
  linear_cost prefill; ///< x = tokens read in the step, y = Σ over sequences of tokens × context
  linear_cost decode;  ///< x = context tokens attended to, y = sequences decoding
  std::string source;  ///< where the numbers came from
};

/// What a simulated device costs: its memory, its copy links, and how long a step of each model
/// shape takes. Shapes without a fit are costed from the roofline (HBM bandwidth and dense FLOPS
/// at the efficiencies given). Plain data: read from and written to `profiles/*.json`.
struct sim_profile {
  std::string name = "sim"; ///< the GPU, "H800"
  std::string source;       ///< where the numbers came from
  std::size_t memory_bytes = std::size_t{80} << 30;
  /// The layout model images take, as on the profiled device: "half" (a GPU's f16/bf16) or
  /// "cpu" (the CPU backend's quantized one), so that a switch copies what it copied there.
  std::string weight_layout = "half";
  /// The devices' work shares one compute resource, as CPU devices share the host's cores: the
  /// steps in progress share it equally, and copies weigh in as below (a GPU computes and
  /// copies on its own engines).
  bool shared_compute = false;
  /// With `shared_compute`: a copy's weight among the steps while it runs (a step weighs 1). A
  /// CPU copy is one thread's memcpy beside the kernels' threads: 1/cores. Its own time is the
  /// link's either way.
  double copy_compute_share = 1;
  double h2d_bytes_per_second = 25e9; ///< pinned host to device, one direction
  double d2h_bytes_per_second = 25e9; ///< device to pinned host
  double d2d_bytes_per_second = 1e12; ///< within the device
  double copy_seconds = 0;            ///< fixed cost of each copy call
  double switch_seconds = 0;          ///< fixed cost of each scale-up, beside its copy
  // The roofline, for shapes without a fit:
  double hbm_bytes_per_second = 2e12;
  double flops = 300e12; ///< dense half-precision FLOP/s
  double bandwidth_efficiency = 0.8, flops_efficiency = 0.5;
  double step_seconds = 0.002; ///< fixed cost of a step (launches, sampling)
  /// A step's time in a pool of these devices over its time measured alone, back to back, by
  /// which every step cost is multiplied. `aegaeon profile` times steps alone; in a pool of CPU
  /// devices the hand-offs between threads and the caches shared with the other devices make
  /// each step longer, by a factor that depends on the host (`scripts/sim-validate` calibrates
  /// it on a pool run). 1: as measured.
  double step_scale = 1;
  std::map<std::string, sim_model_fit> models; ///< by shape name ("qwen2.5-7b")
};

/// Reads a profile (JSON; see docs/research.md). Every field but "name" may be left out (the
/// defaults above); a field of the wrong type or out of range is an error that names it.
result<sim_profile> read_sim_profile(const std::string& path);
/// `read_sim_profile` of JSON text; `origin` names it in errors.
result<sim_profile> parse_sim_profile(const std::string& json, const std::string& origin);
/// `p` as the JSON `read_sim_profile` reads.
std::string to_json(const sim_profile& p);

} // namespace aeg::gpu
