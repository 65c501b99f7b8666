#include "coro/executor.hpp"

namespace aeg::coro {

executor make_inline_executor() {
  static const executor instance = std::make_shared<inline_executor>();
  return instance;
}

} // namespace aeg::coro
