// Topology files (JSON) as the parser reads them: every field's errors name the field and what to
// change; the shipped examples are valid. And the attainment measure the pool reports.

#include "actors/pool_metrics.hpp"
#include "actors/topology.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace aeg::actors {
namespace {

namespace fs = std::filesystem;

TEST(Topology, ErrorsPointAtTheBadField) {
  const std::string good = R"({
    "devices": [{"name": "g0", "backend": "cpu", "memory_mib": 512}],
    "models": [{"name": "a", "synthetic": "smollm2-135m", "tbt_s": 0.2,
                "max_prompt_tokens": 2048, "chat_template": "llama3"}],
    "instances": [{"device": "g0", "role": "colocated"}],
    "policy": {"routing": "aegaeon", "decode": "weighted_round_robin", "scale_queue": 2,
               "max_replicas": 0, "keep_resident": true}})";
  auto ok = parse_topology(good);
  ASSERT_TRUE(ok.has_value()) << ok.error().to_string();
  EXPECT_EQ(ok->policy.scale_queue, 2u);
  EXPECT_EQ(ok->policy.max_replicas, 0u);
  EXPECT_TRUE(ok->policy.keep_resident);
  EXPECT_EQ(parse_topology(R"({"devices": [{"name": "g0"}],
    "models": [{"name": "a", "synthetic": "smollm2-135m"}], "instances": [{"device": "g0"}]})")
                ->policy.max_replicas,
            1u); // ServerlessLLM's R as the paper's artifact ran it
  EXPECT_EQ(ok->models[0].tbt_seconds, 0.2);
  EXPECT_EQ(ok->models[0].max_prompt_tokens, 2048u);
  EXPECT_EQ(ok->models[0].chat_template, "llama3");
  EXPECT_EQ(ok->devices[0].memory_bytes, std::size_t{512} << 20);
  auto folder = parse_topology(R"({"devices": [{"name": "g0"}],
    "models": [{"name": "q", "hf": "models/Qwen2.5-7B-Instruct"}], "instances": [{"device": "g0"}]})");
  ASSERT_TRUE(folder.has_value()) << folder.error().to_string();
  EXPECT_EQ(folder->models[0].source.model_path, "models/Qwen2.5-7B-Instruct");
  auto front = parse_topology(R"({"nodes": [{"address": "10.0.0.2:7000"}, {"address": "h:1"}],
    "cluster_key_file": "k", "models": [{"name": "a", "synthetic": "llama-2-7b"}]})");
  ASSERT_TRUE(front.has_value()) << front.error().to_string();
  ASSERT_EQ(front->nodes.size(), 2u);
  EXPECT_EQ(front->nodes[0].host, "10.0.0.2");
  EXPECT_EQ(front->nodes[0].port, 7000);
  EXPECT_EQ(front->cluster_key_file, "k");
  EXPECT_TRUE(front->devices.empty());
  EXPECT_FALSE(front->tls.enabled());
  auto tls = parse_topology(R"({"nodes": [{"address": "h:1"}], "cluster_key_file": "k",
    "cluster_tls": {"certificate": "f.pem", "key": "f.key", "ca": "ca.pem"},
    "models": [{"name": "a", "synthetic": "llama-2-7b"}]})");
  ASSERT_TRUE(tls.has_value()) << tls.error().to_string();
  EXPECT_EQ(tls->tls.certificate, "f.pem");
  EXPECT_EQ(tls->tls.key, "f.key");
  EXPECT_EQ(tls->tls.ca, "ca.pem");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"devices": []})", "devices: a non-empty array"},
      {R"({"devices": [{"name": "g0", "backend": "gpu"}], "models": [], "instances": []})",
       "devices[0].backend: 'gpu' is not a backend"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a"}], "instances": []})",
       "models[0]: give exactly one of gguf (a file), hf (a Hugging Face model folder) or "
       "synthetic"},
      {R"({"nodes": [{"address": "h:1"}], "cluster_key_file": "k", "devices": [{"name": "g0"}],
           "models": [{"name": "a", "synthetic": "llama-2-7b"}]})",
       "nodes: a front end's topology names its workers, not devices or instances"},
      {R"({"nodes": [{"address": "h:1"}], "models": [{"name": "a", "synthetic": "llama-2-7b"}]})",
       "cluster_key_file: required with nodes"},
      {R"({"nodes": [{"address": "h:1"}], "cluster_key_file": "k", "cluster_tls": {"key": "f",
           "ca": "c"}, "models": [{"name": "a", "synthetic": "llama-2-7b"}]})",
       "cluster_tls.certificate: required (a PEM file)"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0"}], "cluster_tls": {}})",
       "cluster_tls: a front end's (with nodes)"},
      {R"({"nodes": [{"address": "h"}], "cluster_key_file": "k",
           "models": [{"name": "a", "synthetic": "llama-2-7b"}]})",
       "nodes[0].address: 'h' is not HOST:PORT (e.g. 10.0.0.2:7000)"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "gguf": "a.gguf", "hf": "a"}],
           "instances": []})",
       "models[0]: give exactly one of gguf"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "gpt-9"}],
           "instances": [{"device": "g0"}]})",
       "models[0].synthetic: unknown synthetic model shape 'gpt-9'"},
      {R"({"devices": [{"name": "g0"}],
           "models": [{"name": "a", "gguf": "a.gguf", "vocab_size": 100}],
           "instances": [{"device": "g0"}]})",
       "models[0].vocab_size: only a synthetic model takes a vocabulary size"},
      {R"({"devices": [{"name": "g0"}],
           "models": [{"name": "a", "synthetic": "smollm2-135m", "vocab_size": -5}],
           "instances": [{"device": "g0"}]})",
       "models[0].vocab_size: must be a whole number"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g1"}]})",
       "instances[0].device: no device is named 'g1'"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "role": "prefil"}]})",
       "instances[0].role: 'prefil' is not a role"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "role": "prefill"}]})",
       "prefill instances need a decode instance"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0"}], "policy": {"decode": "lottery"}})",
       "policy.decode: 'lottery' is not a policy"},
      {R"({"devices": [{"name": "g0", "colour": 1}]})", "devices[0].colour: unknown field"},
      {R"({"devices": [{"name": "g0", "memory_mib": "lots"}]})",
       "devices[0].memory_mib: must be a number"},
      {"{not json", "not valid JSON"},
      // Numbers out of range are refused, never wrapped or crashed on.
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m",
           "ttft_s": 1e400}]})",
       "topology: models[0].ttft_s: 1e400 is not a number a double holds"},
      {R"({"slab_mib": 0})", "slab_mib: must be a number from 1 to 4096"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m",
           "max_prompt_tokens": -1}]})",
       "models[0].max_prompt_tokens: must be a whole number"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m",
           "chat_template": "vicuna"}]})",
       "models[0].chat_template: unknown chat template 'vicuna'; known: chatml, llama3, llama2, "
       "mistral"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "max_seqs": -1}]})",
       "instances[0].max_seqs: must be a whole number from 1 to 4096; it is -1"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "max_seqs": 32.5}]})",
       "instances[0].max_seqs: must be a whole number"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0"}], "policy": {"turn_steps": 0}})",
       "policy.turn_steps: must be a whole number from 1"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0"}], "policy": {"keep_resident": 1}})",
       "policy.keep_resident: wrong type"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "a", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "role": "prefill", "node": "n0"},
                         {"device": "g0", "role": "decode", "node": "n1"}]})",
       "instances[0]: no decode instance of node 'n0' serves 'a'"},
      {R"({"devices": [{"name": "g0"}], "models": [{"name": "", "synthetic": "smollm2-135m"}]})",
       "models[0].name: must not be empty"},
      {R"({"devices": [{"name": "g0"}],
           "models": [{"name": "a", "synthetic": "smollm2-135m"},
                      {"name": "b", "synthetic": "smollm2-135m"}],
           "instances": [{"device": "g0", "models": ["a"]}]})",
       "models[1]: no instance serves 'b'"},
      {R"({"devices": [{"name": "g0", "name": "g1"}]})",
       "topology: devices[0]: the key 'name' appears twice; keep one"},
  };
  for (const auto& [text, expected] : bad) {
    auto r = parse_topology(text);
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().message.find(expected), std::string::npos)
        << r.error().message << "\n  expected: " << expected;
  }
}

// Without "decode" the instances run the routing's own policy; a named one runs under any
// routing (a request-level baseline such as serverless_llm).
TEST(Topology, TheDecodePolicyDefaultsToTheRoutingsOwn) {
  const std::string base = R"({"devices": [{"name": "g0"}],
    "models": [{"name": "a", "synthetic": "smollm2-135m"}], "instances": [{"device": "g0"}],
    "policy": )";
  auto expect = [&](const std::string& policy, const std::string& runs) {
    auto t = parse_topology(base + policy + "}");
    ASSERT_TRUE(t.has_value()) << t.error().to_string();
    EXPECT_EQ(t->policy.decode_policy(), runs) << policy;
  };
  expect(R"({"routing": "aegaeon"})", "weighted_round_robin");
  expect(R"({"routing": "request_level"})", "drain_first");
  expect(R"({"routing": "dedicated"})", "drain_first");
  expect(R"({"routing": "request_level", "decode": "serverless_llm"})", "serverless_llm");
  expect(R"({"routing": "aegaeon", "decode": "round_robin"})", "round_robin");
  auto bad = parse_topology(base + R"({"decode": "lottery"}})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("serverless_llm_plus"), std::string::npos)
      << bad.error().message; // every known policy is named
}

TEST(Topology, JsonErrorsNameThePathOfTheBadField) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"devices": [{"name": "g0"}], "devices": []})",
       "topology: the key 'devices' appears twice; keep one"},
      // Indices count every element before, nested containers and plain values alike.
      {R"({"devices": [{"name": "g0", "memory_mib": [1, {"a": 2}]},
                       {"name": "g1", "memory_mib": 1, "memory_mib": 2}]})",
       "topology: devices[1]: the key 'memory_mib' appears twice; keep one"},
      {R"({"policy": {"routing": "aegaeon", "turn_steps": 4, "routing": "dedicated"}})",
       "topology: policy: the key 'routing' appears twice; keep one"},
      {R"({"devices": [{"name": "g0", "memory_mib": 1e400}]})",
       "topology: devices[0].memory_mib: 1e400 is not a number a double holds"},
      {R"({"devices": [{"name": "g0"}, {"name": "g1", "memory_mib": -2.5e999}]})",
       "topology: devices[1].memory_mib: -2.5e999 is not a number a double holds"},
      {R"({"instances": [{"device": "g0", "models": ["a", [], 1)" + std::string(400, '0') +
           R"(]}]})",
       "topology: instances[0].models[2]: 1" + std::string(400, '0') +
           " is not a number a double holds"},
      {"1e400", "topology: 1e400 is not a number a double holds"},
  };
  for (const auto& [text, expected] : bad) {
    auto r = parse_topology(text);
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_EQ(r.error().message, expected) << text;
  }
  // The same key in different objects is no duplicate.
  auto ok = parse_topology(R"({"devices": [{"name": "g0"}, {"name": "g1"}],
      "models": [{"name": "a", "synthetic": "smollm2-135m"}],
      "instances": [{"device": "g0"}, {"device": "g1"}]})");
  EXPECT_TRUE(ok.has_value()) << ok.error().to_string();
}

TEST(Attainment, FollowsThePapersDefinition) {
  // The paper's artifact example: tokens at 3, 6, 7, 8 s with TTFT 3 s and TBT 2 s. The second
  // token is late (due at 5), so [3, 6] is off schedule and the deadlines re-anchor at 6.
  const std::vector<double> times = {3, 6, 7, 8};
  EXPECT_EQ(tokens_on_time(times, 3, 2), 3u);
  EXPECT_DOUBLE_EQ(seconds_on_schedule(times, 3, 2), 5);
  request_metrics m;
  m.token_times = times;
  m.tokens_on_time = 3;
  m.seconds_on_schedule = 5;
  EXPECT_DOUBLE_EQ(m.time_attainment(), 5.0 / 8);
  EXPECT_DOUBLE_EQ(m.attainment(), 3.0 / 4);
  // A long wait for the first token costs its length; the tokens after it are on time again.
  EXPECT_EQ(tokens_on_time({9, 10, 11}, 3, 2), 2u);
  EXPECT_DOUBLE_EQ(seconds_on_schedule({9, 10, 11}, 3, 2), 2);
  // Early tokens keep the original schedule: the deadline runs from the deadline, not the token.
  EXPECT_EQ(tokens_on_time({1, 4.9, 7}, 3, 2), 3u);
  EXPECT_EQ(tokens_on_time({1, 2, 7.5}, 3, 2), 2u);
  EXPECT_EQ(tokens_on_time({}, 3, 2), 0u);
  EXPECT_DOUBLE_EQ(request_metrics{}.time_attainment(), 0);
}

TEST(Topology, TheShippedExamplesAreValid) {
  std::size_t seen = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(AEG_SOURCE_DIR) / "apps/examples")) {
    if (entry.path().extension() != ".json")
      continue;
    ++seen;
    auto spec = load_topology(entry.path().string());
    EXPECT_TRUE(spec.has_value()) << entry.path() << ": " << spec.error().to_string();
  }
  EXPECT_GE(seen, 2u);
}

} // namespace
} // namespace aeg::actors
