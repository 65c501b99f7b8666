// MuxServe as a baseline: its placement (plain code) and its switch policy, step by step.

#include "actors/sched/muxserve_placement.hpp"
#include "actors/sched/switch_policy.hpp"

#include <gtest/gtest.h>

#include <map>

namespace aeg::sched {
namespace {

constexpr std::size_t gib = std::size_t{1} << 30;

// Runs the policy over `work` (steps left per model) for up to `steps` steps; returns the model
// each step ran. What it keeps staged is never the model it runs.
std::vector<std::string> run(switch_policy& p, std::map<std::string, int> work, int steps) {
  std::vector<std::string> trace;
  std::string active, staged;
  for (int i = 0; i < steps; ++i) {
    instance_view v;
    v.active = active;
    v.staged = staged;
    for (const auto& [name, left] : work)
      if (left > 0)
        v.models.push_back({name, 0, 1, {}, seconds{0.01}, seconds{0.3}, seconds{0.1}});
    if (v.models.empty())
      break;
    const auto d = p.decide(v);
    if (!d.prefetch.empty())
      EXPECT_NE(d.prefetch, d.run) << "step " << i;
    active = d.run;
    staged = d.prefetch;
    --work[active];
    trace.push_back(active);
  }
  return trace;
}

// Two models with work take alternate steps (the one that did not just run goes next); a model
// alone keeps the device; the model not running is kept staged beside the one that runs.
TEST(MuxServe, TwoResidentModelsAlternateStepByStep) {
  auto p = make_switch_policy("muxserve", seconds{4}, 16);
  ASSERT_NE(p, nullptr);
  const auto trace = run(*p, {{"a", 3}, {"b", 5}}, 20);
  const std::vector<std::string> expected = {"a", "b", "a", "b", "a", "b", "b", "b"};
  EXPECT_EQ(trace, expected);
  instance_view v;
  v.active = "a";
  v.models = {{"a", 0, 1, {}, seconds{0.01}, seconds{0.3}, seconds{0.1}},
              {"b", 0, 1, {}, seconds{0.01}, seconds{0.3}, seconds{0.1}}};
  const auto d = p->decide(v);
  EXPECT_EQ(d.run, "b");
  EXPECT_EQ(d.prefetch, "a");
}

// More than two models on one device (a topology may name the policy anywhere): each takes its
// step in turn, none is starved by the other two.
TEST(MuxServe, ThreeModelsTakeTheirStepsInTurn) {
  auto p = make_muxserve();
  EXPECT_EQ(run(*p, {{"a", 3}, {"b", 3}, {"c", 3}}, 20),
            (std::vector<std::string>{"a", "b", "c", "a", "b", "c", "a", "b", "c"}));
}

TEST(MuxServe, AModelAloneSplitIntoBatchesServesThemInTurns) {
  auto p = make_muxserve();
  instance_view v;
  v.active = "a";
  v.models = {{"a", 0, 8, {}, seconds{0.01}, seconds{0.3}, seconds{0.1}}};
  v.models[0].batches = 2;
  v.turn_steps = 15;
  EXPECT_FALSE(p->decide(v).new_turn);
  v.turn_steps = 16;
  const auto d = p->decide(v);
  EXPECT_EQ(d.run, "a");
  EXPECT_TRUE(d.new_turn);
  EXPECT_TRUE(d.next_batch);
}

std::map<std::string, std::size_t> weights_of(const std::vector<placement_model>& models) {
  std::map<std::string, std::size_t> w;
  for (const auto& m : models)
    w[m.name] = m.weight_bytes;
  return w;
}

// The busiest (rate × size) go first, each onto the device with the most memory left; no device
// takes more than two, nor weights beyond what its KV reserve leaves; the rest are unplaced.
TEST(MuxServePlacement, AtMostTwoPerDeviceWithinMemoryBusiestFirst) {
  const std::vector<placement_model> models = {
      {"small-cold", 15 * gib, 0.1}, {"big", 26 * gib, 0.1},   {"small-hot", 15 * gib, 1.0},
      {"mid", 18 * gib, 0.1},        {"big-2", 26 * gib, 0.1}, {"tiny", 3 * gib, 0.01}};
  const auto p = place_muxserve(models, 2, 80 * gib, 8 * gib);
  ASSERT_EQ(p.devices.size(), 2u);
  // Order: small-hot (15 GB/s·GB), big, big-2, mid, small-cold, tiny.
  EXPECT_EQ(p.devices[0], (std::vector<std::string>{"small-hot", "big-2"}));
  EXPECT_EQ(p.devices[1], (std::vector<std::string>{"big", "mid"}));
  EXPECT_EQ(p.unplaced, (std::vector<std::string>{"small-cold", "tiny"}));
  const auto w = weights_of(models);
  for (const auto& d : p.devices) {
    EXPECT_LE(d.size(), 2u);
    std::size_t used = 0;
    for (const auto& name : d)
      used += w.at(name);
    EXPECT_LE(used, 72 * gib);
  }
  // The same inputs, the same placement.
  const auto again = place_muxserve(models, 2, 80 * gib, 8 * gib);
  EXPECT_EQ(again.devices, p.devices);
  EXPECT_EQ(again.unplaced, p.unplaced);
}

// A model goes only where its weights fit beside the other's and the reserve: two 40 GB models
// never share an 80 GB device, and one larger than a whole device is left out.
TEST(MuxServePlacement, MemoryDecidesWhenTwoDoNotFit) {
  const std::vector<placement_model> models = {
      {"a", 40 * gib, 1}, {"b", 40 * gib, 1}, {"c", 40 * gib, 1}, {"huge", 90 * gib, 1}};
  const auto p = place_muxserve(models, 2, 80 * gib, 8 * gib);
  EXPECT_EQ(p.devices[0], (std::vector<std::string>{"a"}));
  EXPECT_EQ(p.devices[1], (std::vector<std::string>{"b"}));
  EXPECT_EQ(p.unplaced, (std::vector<std::string>{"c", "huge"}));
  EXPECT_TRUE(place_muxserve(models, 0, 80 * gib, 8 * gib).devices.empty());
}

// At equal rates and sizes, 2 × devices models are placed, two a device, in the input's order
// spread over the devices; the rest are unplaced (the paper's 32 models on 16 GPUs).
TEST(MuxServePlacement, EqualModelsFillEveryDeviceWithTwo) {
  std::vector<placement_model> models;
  for (int i = 0; i < 40; ++i)
    models.push_back({"m" + std::to_string(i), 15 * gib, 0.1});
  const auto p = place_muxserve(models, 16, 80 * gib, 8 * gib);
  for (std::size_t d = 0; d < 16; ++d) {
    ASSERT_EQ(p.devices[d].size(), 2u) << d;
    EXPECT_EQ(p.devices[d][0], "m" + std::to_string(d));
    EXPECT_EQ(p.devices[d][1], "m" + std::to_string(16 + d));
  }
  ASSERT_EQ(p.unplaced.size(), 8u);
  EXPECT_EQ(p.unplaced.front(), "m32");
}

} // namespace
} // namespace aeg::sched
