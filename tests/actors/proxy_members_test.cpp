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

} // namespace
} // namespace aeg::actors
