#include "coro/async_scope.hpp"

#include "coro/error.hpp"

namespace aeg::coro {

// The frame of one spawned task. It starts suspended, finishes by unregistering itself, and then
// frees its own frame (final_suspend never suspends).
struct async_scope::root {
  struct promise_type {
    executor exec_;
    async_scope* scope = nullptr;
    root_list::iterator self;
    const executor& exec() const noexcept { return exec_; }
    root get_return_object() noexcept {
      return root{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); } // run() catches everything
  };
  std::coroutine_handle<promise_type> handle;
};

namespace {

// Gives a coroutine its own promise without suspending.
template <class Promise>
struct own_promise {
  Promise* promise = nullptr;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
    promise = &h.promise();
    return false;
  }
  Promise* await_resume() const noexcept { return promise; }
};

} // namespace

async_scope::async_scope(error_handler on_error) : on_error_(std::move(on_error)) {}

async_scope::~async_scope() {
  destroy_suspended();
}

async_scope::root async_scope::run(task<void> t) {
  std::exception_ptr failure;
  try {
    co_await std::move(t);
  } catch (const cancelled_exception&) {
    // A cancelled root ended as asked: not a failure.
  } catch (...) {
    failure = std::current_exception();
  }
  t = task<void>{}; // free the task's frame before unregistering
  auto* p = co_await own_promise<root::promise_type>{};
  p->scope->finish(p->self, std::move(failure));
}

std::coroutine_handle<> async_scope::make_root(executor exec, task<void> t) {
  auto r = run(std::move(t));
  auto& p = r.handle.promise();
  p.exec_ = std::move(exec);
  p.scope = this;
  p.self = add(r.handle);
  return r.handle;
}

void async_scope::spawn(executor exec, task<void> t) {
  auto h = make_root(exec, std::move(t));
  exec->post(h);
}

void async_scope::spawn_now(executor exec, task<void> t) {
  make_root(std::move(exec), std::move(t)).resume();
}

std::size_t async_scope::num_live() const {
  std::lock_guard lock(mutex_);
  return roots_.size();
}

async_scope::root_list::iterator async_scope::add(std::coroutine_handle<> h) {
  std::lock_guard lock(mutex_);
  return roots_.insert(roots_.end(), h);
}

void async_scope::finish(root_list::iterator it, std::exception_ptr failure) {
  std::vector<std::shared_ptr<waiter>> ready;
  error_handler handler;
  {
    std::lock_guard lock(mutex_);
    roots_.erase(it);
    if (failure) {
      if (on_error_)
        handler = on_error_;
      else if (!first_failure_)
        first_failure_ = failure;
    }
    if (roots_.empty())
      ready.swap(joiners_);
  }
  if (handler)
    handler(failure);
  // Last use of `this`: a resumed joiner may destroy the scope.
  for (auto& w : ready)
    w->fire();
}

void async_scope::destroy_suspended() {
  root_list doomed;
  std::vector<std::shared_ptr<waiter>> ready;
  {
    std::lock_guard lock(mutex_);
    doomed.swap(roots_);
    ready.swap(joiners_);
  }
  for (auto h : doomed)
    h.destroy();
  for (auto& w : ready)
    w->fire();
}

bool async_scope::join_awaiter::suspend(std::shared_ptr<waiter> w) {
  {
    std::lock_guard lock(scope_.mutex_);
    if (scope_.roots_.empty())
      return false;
    waiter_ = w;
    scope_.joiners_.push_back(w);
  }
  return w->arm();
}

void async_scope::join_awaiter::await_resume() const {
  std::exception_ptr failure;
  {
    std::lock_guard lock(scope_.mutex_);
    failure = std::exchange(scope_.first_failure_, nullptr);
  }
  if (failure)
    std::rethrow_exception(failure);
}

async_scope::join_awaiter::~join_awaiter() {
  if (waiter_)
    waiter_->abandon();
}

} // namespace aeg::coro
