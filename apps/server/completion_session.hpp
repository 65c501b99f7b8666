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
#include <vector>

namespace aeg::server {

struct served_text;

/// One completion from request to answer: it checks what the client asked, submits its `n`
/// choices to the pool, each through its own bridge, and answers as the tokens come: OpenAI's
/// chunks as server-sent events when streamed (one event per token, held-back text on each
/// choice's final chunk), or the whole JSON once every choice has ended. Stop strings end a
/// choice's work as well as its text. A client that leaves cancels every choice and frees their
/// KV; a choice that fails fails the answer. io thread only.
class completion_session final : public pending_answer,
                                 public std::enable_shared_from_this<completion_session> {
public:
  /// Answers `req` (to /v1/completions, or /v1/chat/completions when `chat`) on `c`: an error at
  /// once when it cannot run, else the answer as it comes.
  static void start(server_state& st, http_connection& c, const http_request& req, bool chat);

  completion_session(server_state& st, http_connection& c, completion_params p,
                     const std::string& model, const served_text& text,
                     std::set<std::int32_t> silent_tokens, std::size_t prompt_tokens);

  // pending_answer
  void abandon() override;
  void cancel() override;

private:
  // One of the `n` answers: its generation in the pool and its text so far.
  struct choice final : generation_listener {
    choice(completion_session& s, std::size_t index, models::stream_decoder decoder);
    void submitted() override;
    void refused(api_error e) override;
    void token(std::int32_t token, const models::token_logprobs& logprobs) override;
    void done(const actors::generation_result& r) override;

    completion_session& session;
    std::size_t index;
    bridge_actor bridge;
    models::stream_decoder decoder;
    stop_matcher stops;
    choice_text out;  // non-streaming: the text so far
    std::string echo; // streaming with echo: the prompt, before the first token
    std::size_t tokens = 0, characters = 0; // generated, and the characters of their pieces
    std::chrono::steady_clock::time_point last_token;
    bool first_chunk = true, ended = false;
  };

  void submit(actors::generation_request r);
  void send_head();
  std::vector<logprob_entry> entries(std::int32_t token, const models::token_logprobs& lp,
                                     choice& c) const;
  void emit(choice& c, const std::string& piece, bool every_token,
            std::vector<logprob_entry> logprobs);
  void complete(choice& c, std::string_view reason, std::string_view rest = {});
  void answer();
  void fail(const api_error& e);
  void cancel_all();
  void end();

  server_state& st_;
  std::weak_ptr<http_connection> conn_;
  std::string client_; ///< its address, for the per-client cap
  completion_params params_;
  std::string model_;
  const models::tokenizer& tokens_;
  response_shape shape_;
  std::set<std::int32_t> silent_;
  std::vector<std::shared_ptr<choice>> choices_;
  std::size_t prompt_tokens_ = 0, ended_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool head_sent_ = false, finished_ = false;
};

} // namespace aeg::server
