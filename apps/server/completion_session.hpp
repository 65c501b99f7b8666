#pragma once

#include "apps/server/http_connection.hpp"
#include "apps/server/openai.hpp"
#include "apps/server/pool_bridge.hpp"
#include "apps/server/server_state.hpp"
#include "models/tokenizer/stream_decoder.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

namespace aeg::server {

/// One completion from request to answer: it checks what the client asked, submits it to the
/// pool through a bridge, and answers as the tokens come: OpenAI's chunks as server-sent events
/// when streamed (one event per token, held-back text on the final chunk), or the whole JSON at
/// the end. Stop strings end the work as well as the text. A client that leaves cancels it and
/// frees its KV. io thread only.
class completion_session final : public generation_listener,
                                 public pending_answer,
                                 public std::enable_shared_from_this<completion_session> {
public:
  /// Answers `req` (to /v1/completions, or /v1/chat/completions when `chat`) on `c`: an error at
  /// once when it cannot run, else the answer as it comes.
  static void start(server_state& st, http_connection& c, const http_request& req, bool chat);

  completion_session(server_state& st, http_connection& c, completion_params p,
                     const std::string& model, const served_text& text,
                     std::set<std::int32_t> silent_tokens, std::size_t prompt_tokens);

  // generation_listener
  void submitted() override;
  void refused(api_error e) override;
  void token(std::int32_t token) override;
  void done(const actors::generation_result& r) override;
  // pending_answer
  void abandon() override;
  void cancel() override;

private:
  void send_head();
  void emit(const std::string& piece, bool every_token);
  void complete(std::string_view reason, std::string_view rest = {});
  void fail(const api_error& e);
  void end();

  server_state& st_;
  std::weak_ptr<http_connection> conn_;
  std::string client_; ///< its address, for the per-client cap
  completion_params params_;
  std::string model_;
  response_shape shape_;
  models::stream_decoder decoder_;
  stop_matcher stops_;
  std::set<std::int32_t> silent_;
  std::string text_; // non-streaming: the answer so far
  std::string echo_; // streaming with echo: the prompt's text, sent before the first token's
  std::size_t prompt_tokens_ = 0, completion_tokens_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_token_;
  bool head_sent_ = false, first_chunk_ = true, finished_ = false;
  bridge_actor bridge_;
};

} // namespace aeg::server
