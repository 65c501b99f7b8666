// A node's hand-off desk on its own: it parks a decode job (KV in the host pool) for the
// request actor on another node and sends that actor a ticket; it gives the job to the decode
// instance the request actor names, once; a cancel, or the request actor's end, drops the job
// and frees its KV; a job nobody waits for is dropped at once.
#include "actors/generation.hpp"
#include "actors/handoff_desk.hpp"
#include "actors/instance.hpp"
#include "actors/runtime_config.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <gtest/gtest.h>

#include <chrono>

namespace aeg::actors {
namespace {

using decoded_atom = caf::atom_constant<caf::atom("decoded")>;

class HandoffDesk : public ::testing::Test {
protected:
  HandoffDesk() {
    configure_runtime(cfg_); // as our processes run CAF
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    self_ = std::make_unique<caf::scoped_actor>(*sys_);
    auto dev = *gpu::make_device({.backend = "cpu"});
    pool_ = std::make_shared<gpu::kv_pool>(std::move(*dev->allocate_pinned(256 << 10)), 64 << 10);
    desk_ = spawn_handoff_desk(*sys_);
  }
  ~HandoffDesk() override {
    caf::anon_send_exit(desk_, caf::exit_reason::user_shutdown);
    self_.reset();
  }

  // A request actor elsewhere: it passes the tickets it gets on to the test.
  handoff_sink owner() {
    const caf::actor test = *self_;
    return sys_->spawn([test]() -> handoff_sink::behavior_type {
      return {[](handoff_atom, decode_job) {},
              [test](handoff_atom, parked_job p) { caf::anon_send(test, std::move(p)); }};
    });
  }

  // A decode instance: it tells the test how many KV blocks the job it got holds, and keeps
  // the job (so its KV stays in use) until it ends.
  instance_actor decoder() {
    const caf::actor test = *self_;
    auto kept = std::make_shared<std::vector<decode_job>>();
    return caf::actor_cast<instance_actor>(sys_->spawn([test, kept]() -> caf::behavior {
      return {[test, kept](decode_atom, decode_job& job) {
        caf::anon_send(test, decoded_atom::value, job.request.id, job.kv->peek().blocks.size());
        kept->push_back(std::move(job));
      }};
    }));
  }

  // A prefilled request `id` for `to`, holding 2 KV blocks of the host pool.
  decode_job job(std::uint64_t id, const handoff_sink& to) {
    models::kv_handle kv;
    kv.where = models::kv_handle::place::host;
    kv.geometry = {2, 1, 64, kernels::dtype::f32}; // 16 KiB blocks
    EXPECT_TRUE(pool_->allocate(kv.block_bytes(), 2, kv.blocks).has_value());
    decode_job j;
    j.request.id = id;
    j.request.prompt = {1, 2, 3};
    j.request.handoff = to;
    j.kv = std::make_shared<kv_in_flight>(pool_, std::move(kv));
    j.prefill_seconds = 0.25;
    return j;
  }

  std::size_t blocks_used() { return pool_->snapshot()->slabs().num_used(16 << 10); }

  // The KV blocks in use once they are `n`, or after the deadline.
  std::size_t blocks_used_after_waiting(std::size_t n) {
    for (int i = 0; i < 200 && blocks_used() != n; ++i)
      (*self_)->receive(caf::after(std::chrono::milliseconds(10)) >> [] {});
    return blocks_used();
  }

  parked_job ticket() {
    parked_job got;
    (*self_)->receive([&](parked_job& p) { got = std::move(p); },
                      caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no ticket"; });
    return got;
  }

  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<caf::scoped_actor> self_;
  std::shared_ptr<gpu::kv_pool> pool_;
  caf::actor desk_;
};

TEST_F(HandoffDesk, GivesAParkedJobToTheDecoderItIsToldOnce) {
  const auto to = owner();
  caf::anon_send(desk_, handoff_atom::value, job(7, to));
  const auto p = ticket();
  EXPECT_EQ(p.desk, desk_);
  EXPECT_EQ(p.prompt_tokens, 3u);
  EXPECT_EQ(p.prefill_seconds, 0.25);
  EXPECT_EQ(blocks_used(), 2u); // parked: the KV stays on this node
  caf::anon_send(desk_, handoff_atom::value, job(8, to));
  const auto last = ticket();

  // Job 8, asked for after job 7 twice, reaches the test after anything the desk gave for those
  // (one sender, one desk, one decoder: messages keep their order), so by then a second job 7
  // would have come.
  const auto d = decoder();
  caf::anon_send(desk_, decode_atom::value, p.ticket, d);
  caf::anon_send(desk_, decode_atom::value, p.ticket, d); // a second time: nothing left to give
  caf::anon_send(desk_, decode_atom::value, last.ticket, d);
  int sevens = 0;
  bool eight = false;
  (*self_)->receive_while([&] { return !eight; })(
      [&](decoded_atom, std::uint64_t id, std::size_t blocks) {
        EXPECT_EQ(blocks, 2u);
        sevens += id == 7;
        eight = id == 8;
      },
      caf::after(std::chrono::seconds(10)) >>
          [&] {
            ADD_FAILURE() << "job 8 never reached the decoder";
            eight = true;
          });
  EXPECT_EQ(sevens, 1);
  EXPECT_EQ(blocks_used(), 4u); // the decoder holds both now
  caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
  EXPECT_EQ(blocks_used_after_waiting(0), 0u); // and frees them with its end
  caf::anon_send_exit(to, caf::exit_reason::user_shutdown);
}

TEST_F(HandoffDesk, ACancelOrTheRequestActorsEndFreesTheKv) {
  const auto to = owner();
  caf::anon_send(desk_, handoff_atom::value, job(1, to));
  caf::anon_send(desk_, handoff_atom::value, job(2, to));
  const auto first = ticket();
  ticket();
  EXPECT_EQ(blocks_used(), 4u);
  caf::anon_send(desk_, cancel_atom::value, first.ticket);
  EXPECT_EQ(blocks_used_after_waiting(2), 2u);
  caf::anon_send(desk_, cancel_atom::value, std::uint64_t{999}); // unknown: ignored
  caf::anon_send_exit(to, caf::exit_reason::kill);               // its front end is gone
  EXPECT_EQ(blocks_used_after_waiting(0), 0u);
}

TEST_F(HandoffDesk, AJobNobodyWaitsForIsDroppedAtOnce) {
  caf::anon_send(desk_, handoff_atom::value, job(3, handoff_sink{}));
  EXPECT_EQ(blocks_used_after_waiting(0), 0u);
}

} // namespace
} // namespace aeg::actors
