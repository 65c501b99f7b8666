#include "apps/server/pool_bridge.hpp"

#include "actors/ask.hpp"
#include "actors/coro_actor.hpp"
#include "coro/when_all.hpp"

#include <caf/actor_system.hpp>
#include <caf/send.hpp>

#include <chrono>
#include <optional>

namespace aeg::server {

namespace {

using namespace std::chrono_literals;

// One generation: submits it, then relays its tokens and its end to the io thread. A cancel from
// the io thread goes to the proxy once the request has its id.
class bridge final : public actors::typed_coro_actor<bridge_actor> {
public:
  bridge(caf::actor_config& cfg, actors::proxy_actor proxy, std::shared_ptr<io_link> link,
         std::weak_ptr<generation_listener> listener, actors::generation_request r)
      : actors::typed_coro_actor<bridge_actor>(cfg), proxy_(std::move(proxy)),
        link_(std::move(link)), listener_(std::move(listener)), request_(std::move(r)) {}

  behavior_type make_behavior() override {
    request_.sink = handle();
    spawn(submit());
    return with_coroutines(
        [this](actors::token_atom, std::uint64_t, std::int32_t token, models::token_logprobs& lp) {
          tell([token, lp = std::move(lp)](generation_listener& l) { l.token(token, lp); });
        },
        [this](actors::tokens_atom, std::uint64_t, actors::token_batch& b) {
          tell([tokens = std::move(b.tokens)](generation_listener& l) {
            for (auto t : tokens)
              l.token(t, {});
          });
        },
        [this](actors::done_atom, actors::generation_result r) {
          tell([r = std::move(r)](generation_listener& l) { l.done(r); });
          quit();
        },
        [this](bridge_cancel_atom) {
          if (id_)
            send(proxy_, actors::cancel_atom::value, *id_);
          else
            cancel_pending_ = true;
        });
  }

private:
  coro::task<void> submit() {
    auto id = co_await actors::ask<std::uint64_t>(this, proxy_, 30s, actors::submit_atom::value,
                                                  std::move(request_));
    if (!id) {
      const std::string& why = id.error().message;
      const bool full = why.find(actors::overloaded_prefix) != std::string::npos;
      api_error e{.status = full ? 429 : 503,
                  .message = "the pool refused the request: " + why,
                  .type = full ? "requests" : "server_error",
                  .code = full ? "rate_limit_exceeded" : "",
                  .retry_after = 1};
      tell([e = std::move(e)](generation_listener& l) { l.refused(e); });
      quit();
      co_return;
    }
    id_ = *id;
    if (cancel_pending_)
      send(proxy_, actors::cancel_atom::value, *id_);
    tell([](generation_listener& l) { l.submitted(); });
  }

  template <class F>
  void tell(F f) {
    link_->post([listener = listener_, f = std::move(f)] {
      if (auto l = listener.lock())
        f(*l);
    });
  }

  actors::proxy_actor proxy_;
  std::shared_ptr<io_link> link_;
  std::weak_ptr<generation_listener> listener_;
  actors::generation_request request_;
  std::optional<std::uint64_t> id_;
  bool cancel_pending_ = false;
};

// Gathers the pool's figures: the proxy's and every instance's, asked at once.
class gatherer final : public actors::coro_actor {
public:
  using callback = std::function<void(actors::pool_metrics, std::vector<instance_report>)>;

  gatherer(caf::actor_config& cfg, actors::proxy_actor proxy,
           std::vector<actors::instance_actor> instances, std::vector<std::string> names,
           std::shared_ptr<io_link> link, callback done)
      : actors::coro_actor(cfg), proxy_(std::move(proxy)), instances_(std::move(instances)),
        names_(std::move(names)), link_(std::move(link)), done_(std::move(done)) {}

  caf::behavior make_behavior() override {
    spawn(gather());
    return with_coroutines();
  }

private:
  // The proxy first: it names every instance it has used, those that joined later too; then the
  // living ones' figures at once (a dead one is reported down without asking).
  coro::task<void> gather() {
    auto pool =
        co_await actors::ask<actors::pool_metrics>(this, proxy_, 5s, actors::metrics_atom::value);
    std::vector<std::pair<std::string, actors::instance_actor>> who;
    if (pool)
      for (const auto& m : pool->members)
        who.emplace_back(m.name, m.alive ? m.actor : actors::instance_actor{});
    else
      for (std::size_t i = 0; i < names_.size(); ++i)
        who.emplace_back(names_[i], instances_[i]);
    std::vector<coro::task<result<actors::instance_stats>>> asks;
    for (const auto& [name, inst] : who)
      if (inst)
        asks.push_back(
            actors::ask<actors::instance_stats>(this, inst, 5s, actors::stats_atom::value));
    auto stats = co_await coro::when_all(std::move(asks));
    std::vector<instance_report> reports;
    std::size_t k = 0;
    for (const auto& [name, inst] : who) {
      std::optional<actors::instance_stats> s;
      if (inst) {
        auto& answer = stats[k++];
        if (answer)
          s = std::move(*answer);
      }
      reports.push_back({name, std::move(s)});
    }
    link_->post(
        [done = std::move(done_), pool = pool ? std::move(*pool) : actors::pool_metrics{},
         reports = std::move(reports)]() mutable { done(std::move(pool), std::move(reports)); });
    quit();
  }

  actors::proxy_actor proxy_;
  std::vector<actors::instance_actor> instances_;
  std::vector<std::string> names_;
  std::shared_ptr<io_link> link_;
  callback done_;
};

} // namespace

bridge_actor start_generation(caf::actor_system& sys, actors::proxy_actor proxy,
                              std::shared_ptr<io_link> link,
                              std::weak_ptr<generation_listener> listener,
                              actors::generation_request r) {
  return sys.spawn<bridge>(std::move(proxy), std::move(link), std::move(listener), std::move(r));
}

void gather_metrics(caf::actor_system& sys, const actors::pool& pool, std::shared_ptr<io_link> link,
                    std::function<void(actors::pool_metrics, std::vector<instance_report>)> done) {
  sys.spawn<gatherer>(pool.proxy(), pool.instances(), pool.instance_names(), std::move(link),
                      std::move(done));
}

} // namespace aeg::server
