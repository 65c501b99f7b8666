#include "actors/simulation.hpp"
#include "apps/aegaeon/node_placement.hpp"
#include "apps/aegaeon/policy_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace aeg::apps {
namespace {

std::vector<actors::model_spec> sim_models(std::size_t n) {
  std::vector<actors::model_spec> models;
  for (std::size_t i = 0; i < n; ++i) {
    actors::model_spec m;
    m.name = "m" + std::to_string(i);
    m.source.synthetic = "qwen2.5-7b";
    models.push_back(m);
  }
  return models;
}

// `policy`'s pool on `devices` simulated devices (`prefill` prefill-only where it has them),
// split into `nodes` nodes as `placement` says.
actors::pool_spec split_pool(const std::string& policy, std::size_t devices, std::size_t prefill,
                             std::size_t models, std::size_t nodes, node_placement placement) {
  auto spec = policy_pool({"sim", devices, prefill, 0, 4096, 64}, policy, sim_models(models));
  place_on_nodes(spec, splits_prefill(policy) ? prefill : 0, {nodes, placement});
  return spec;
}

// The index of the model named "m<i>".
std::size_t model_index(const std::string& name) {
  return std::stoul(name.substr(1));
}

TEST(NodePlacement, EachNodeTakesItsShareOfPrefillAndDecodeDevices) {
  // 16 GPUs, 6 prefill: two nodes of 3 prefill + 5 decode, in order.
  for (std::size_t i = 0; i < 16; ++i) {
    const std::size_t expected = i < 3 ? 0 : i < 6 ? 1 : i < 11 ? 0 : 1;
    EXPECT_EQ(node_of_device(i, 16, 6, 2), expected) << "device " << i;
  }
  for (std::size_t i = 0; i < 16; ++i)
    EXPECT_EQ(node_of_device(i, 16, 0, 4), i / 4) << "device " << i;
}

TEST(NodePlacement, UnevenSplitsAreRefusedWithWhatWouldSplit) {
  EXPECT_TRUE(check_node_split(16, 6, 2));
  EXPECT_TRUE(check_node_split(16, 0, 16));
  const auto four = check_node_split(16, 6, 4);
  ASSERT_FALSE(four);
  EXPECT_NE(four.error().message.find("use --nodes 1, 2"), std::string::npos)
      << four.error().message;
  EXPECT_NE(four.error().message.find("--prefill-devices 4, 8, 12"), std::string::npos)
      << four.error().message;
  const auto three = check_node_split(16, 0, 3);
  ASSERT_FALSE(three);
  EXPECT_NE(three.error().message.find("use --nodes 1, 2, 4, 8, 16"), std::string::npos)
      << three.error().message;
  EXPECT_NE(three.error().message.find("--devices a multiple of 3"), std::string::npos);
  // Two prefill devices cannot go one to each of four nodes; and no node at all is no split.
  EXPECT_FALSE(check_node_split(4, 2, 4));
  EXPECT_FALSE(check_node_split(4, 0, 0));
  EXPECT_FALSE(parse_node_placement("sharded"));
}

TEST(NodePlacement, PooledLabelsEveryInstanceAndKeepsEveryModelEverywhere) {
  const auto spec = split_pool("aegaeon", 16, 6, 10, 2, node_placement::pooled);
  ASSERT_EQ(spec.instances.size(), 16U);
  std::map<std::string, std::size_t> per_node;
  for (const auto& is : spec.instances) {
    EXPECT_TRUE(is.models.empty()) << is.device << " serves every model";
    ++per_node[is.node + "/" + actors::to_string(is.role)];
  }
  const std::map<std::string, std::size_t> expected = {
      {"n0/prefill", 3}, {"n0/decode", 5}, {"n1/prefill", 3}, {"n1/decode", 5}};
  EXPECT_EQ(per_node, expected);
}

TEST(NodePlacement, PartitionedServesModelIOnlyOnNodeIModN) {
  for (const std::string policy : {"aegaeon", "serverless_llm"}) {
    const auto spec = split_pool(policy, 16, 6, 11, 2, node_placement::partitioned);
    ASSERT_EQ(spec.instances.size(), 16U) << policy;
    std::set<std::string> served;
    std::map<std::string, std::size_t> per_node;
    for (const auto& is : spec.instances) {
      const std::size_t k = is.node == "n0" ? 0 : 1;
      ++per_node[is.node];
      ASSERT_FALSE(is.models.empty()) << policy << " " << is.device;
      for (const auto& m : is.models) {
        EXPECT_EQ(model_index(m) % 2, k) << policy << " " << is.device << " serves " << m;
        served.insert(m);
      }
    }
    EXPECT_EQ(served.size(), 11U) << policy << ": every model on some node";
    EXPECT_EQ(per_node["n0"], 8U);
    EXPECT_EQ(per_node["n1"], 8U);
  }
}

TEST(NodePlacement, DedicatedServesTheSameModelsEitherWay) {
  const auto pooled = split_pool("dedicated", 8, 0, 12, 2, node_placement::pooled);
  const auto parted = split_pool("dedicated", 8, 0, 12, 2, node_placement::partitioned);
  std::set<std::string> a, b;
  for (const auto& is : pooled.instances)
    a.insert(is.models.at(0));
  for (const auto& is : parted.instances) {
    ASSERT_EQ(is.models.size(), 1U);
    b.insert(is.models[0]);
    EXPECT_EQ(is.node, model_index(is.models[0]) % 2 == 0 ? "n0" : "n1") << is.device;
  }
  EXPECT_EQ(a, b);
  EXPECT_EQ(b.size(), 8U); // one model per GPU
}

TEST(NodePlacement, NodesWithoutModelsKeepNoInstance) {
  // Three models on four nodes: node 3's partition is empty, and an instance with no models
  // listed would serve every one.
  const auto spec = split_pool("aegaeon", 8, 4, 3, 4, node_placement::partitioned);
  ASSERT_EQ(spec.instances.size(), 6U);
  for (const auto& is : spec.instances)
    EXPECT_NE(is.node, "n3") << is.device;
}

std::vector<actors::trace_request> even_trace(std::size_t models, std::size_t n,
                                              std::size_t output) {
  std::vector<actors::trace_request> out;
  for (std::size_t i = 0; i < n; ++i)
    out.push_back({0.25 * static_cast<double>(i), "m" + std::to_string(i % models),
                   64 + (i * 37) % 400, output});
  return out;
}

result<actors::simulation_report> run(actors::pool_spec spec,
                                      const std::vector<actors::trace_request>& trace) {
  spec.sim_profile = std::make_shared<gpu::sim_profile>();
  spec.host_kv_bytes = std::size_t{64} << 30;
  spec.slab_bytes = std::size_t{64} << 20;
  return actors::simulate(std::move(spec), trace);
}

TEST(NodePlacementSimulation, EveryHandOffStaysInsideItsNode) {
  // Two nodes of one prefill and two decode instances. A prefill instance makes each request's
  // first token and a decode instance the rest; with every output the same length, a node's
  // decode tokens are its prefills' requests times the rest of the output exactly when no
  // request crossed to another node's decode instances.
  const std::size_t output = 12;
  const auto trace = even_trace(4, 48, output);
  const auto spec = split_pool("aegaeon", 6, 2, 4, 2, node_placement::pooled);
  auto r = run(spec, trace);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->rejected, 0U) << r->first_rejection;
  ASSERT_EQ(r->metrics.finished.size(), trace.size());
  std::map<std::string, std::size_t> prefilled, decoded;
  for (std::size_t i = 0; i < spec.instances.size(); ++i) {
    const auto& is = spec.instances[i];
    const auto& s = r->instances.at(i);
    EXPECT_EQ(s.preemptions, 0U) << "a recomputed request would count its tokens twice";
    (is.role == actors::instance_role::prefill ? prefilled : decoded)[is.node] +=
        s.tokens_generated;
  }
  ASSERT_EQ(prefilled["n0"] + prefilled["n1"], trace.size());
  EXPECT_GT(prefilled["n0"], 0U);
  EXPECT_GT(prefilled["n1"], 0U);
  for (const std::string node : {"n0", "n1"})
    EXPECT_EQ(decoded[node], prefilled[node] * (output - 1)) << node;
}

TEST(NodePlacementSimulation, PartitionedNodesServeOnlyTheirModelsRequests) {
  const auto trace = even_trace(5, 40, 20);
  for (const std::string policy : {"aegaeon", "serverless_llm"}) {
    const auto spec = split_pool(policy, 6, 2, 5, 2, node_placement::partitioned);
    auto r = run(spec, trace);
    ASSERT_TRUE(r) << policy << ": " << r.error().message;
    ASSERT_EQ(r->rejected, 0U) << r->first_rejection;
    std::map<std::string, std::size_t> made, asked;
    for (std::size_t i = 0; i < spec.instances.size(); ++i)
      made[spec.instances[i].node] += r->instances.at(i).tokens_generated;
    for (const auto& t : trace)
      asked[model_index(t.model) % 2 == 0 ? "n0" : "n1"] += t.output_tokens;
    EXPECT_EQ(made, asked) << policy;
  }
}

} // namespace
} // namespace aeg::apps
