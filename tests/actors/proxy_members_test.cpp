// What the proxy keeps of each instance: the requests placed there by model, with a total that
// every placement reads, and the models it serves.
#include "actors/proxy_members.hpp"

#include <gtest/gtest.h>

namespace aeg::actors {
namespace {

using proxy_detail::proxy_member;

TEST(ProxyMember, TheTotalFollowsEveryPlacementAndLeaving) {
  proxy_member m;
  EXPECT_EQ(m.total(), 0U);
  m.place("a");
  m.place("a");
  m.place("b");
  EXPECT_EQ(m.total(), 3U);
  EXPECT_EQ(m.holds("a"), 2U);
  EXPECT_EQ(m.holds("b"), 1U);
  m.leave("a");
  EXPECT_EQ(m.total(), 2U);
  EXPECT_EQ(m.holds("a"), 1U);
  m.leave("b"); // its last: the member lists only what it holds
  EXPECT_EQ(m.active().count("b"), 0U);
  m.place("b");
  m.leave("c"); // never placed here: nothing changes
  EXPECT_EQ(m.total(), 2U);
  m.clear_active(); // the instance went down
  EXPECT_EQ(m.total(), 0U);
  EXPECT_TRUE(m.active().empty());
  m.leave("a"); // a request that ran there leaves after it went down
  EXPECT_EQ(m.total(), 0U);
  EXPECT_EQ(m.holds("a"), 0U);
}

TEST(ProxyMember, ServesExactlyItsModels) {
  proxy_member m;
  EXPECT_FALSE(m.serves("a"));
  proxy_member n;
  n.m.models = {"qwen", "llama", "yi"};
  EXPECT_TRUE(n.serves("llama"));
  EXPECT_TRUE(n.serves("yi"));
  EXPECT_FALSE(n.serves("mistral"));
  EXPECT_FALSE(n.serves("lla"));
}

// A placement asks for a node's decode side once per lane; the memo answers as `decode_side`
// does until it is cleared, after which it sees the members as they are.
TEST(DecodeSides, AnswerAsDecodeSideUntilCleared) {
  std::vector<proxy_member> members(3);
  for (auto& m : members) {
    m.m.role = instance_role::decode;
    m.m.models = {"qwen", "llama"};
  }
  members[2].m.node = "b";
  members[0].place("qwen");
  proxy_detail::decode_sides sides;
  const auto a = sides.of(members, "", "qwen");
  const auto expected = proxy_detail::decode_side(members, "", "qwen");
  EXPECT_EQ(a.held, expected.held);
  EXPECT_EQ(a.decoders, 2.0);
  EXPECT_EQ(a.serving, 2U);
  EXPECT_TRUE(a.batch);
  EXPECT_EQ(sides.of(members, "b", "qwen").decoders, 1.0); // another node: its own answer
  EXPECT_FALSE(sides.of(members, "", "llama").batch);      // another model too
  members[1].place("qwen");
  members[1].place("qwen");
  EXPECT_EQ(sides.of(members, "", "qwen").held, 1.0); // kept until cleared
  sides.clear();
  EXPECT_EQ(sides.of(members, "", "qwen").held, 3.0);
}

} // namespace
} // namespace aeg::actors
