#include "apps/aegaeon/remote.hpp"

#include "apps/aegaeon/interrupt.hpp"
#include "apps/aegaeon/remote_support.hpp"
#include "apps/server/client.hpp"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <optional>
#include <unistd.h>

namespace aeg::apps {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// --- chat -------------------------------------------------------------------------------------

int run_remote_chat(const generate_options& o) {
  auto url = parse_server_url(o.url);
  if (!url) {
    fmt::print(stderr, "aegaeon chat: {}\n", url.error().message);
    return 2;
  }
  server::http_client client(*url, o.api_key);
  auto names = list_models(client, !o.api_key.empty());
  if (!names) {
    fmt::print(stderr, "aegaeon chat: {}\n", names.error().message);
    return names.error().code == errc::invalid_argument ? 2 : 1;
  }
  std::string model = o.model_path;
  if (std::find(names->begin(), names->end(), model) == names->end()) {
    if (!model.empty() && model.find(".gguf") == std::string::npos) {
      fmt::print(stderr, "aegaeon chat: the server has no model '{}'; it has: {}\n", model,
                 fmt::join(*names, ", "));
      return 2;
    }
    model = names->empty() ? "" : names->front();
  }
  const bool tty = isatty(STDIN_FILENO) != 0;
  catch_interrupts();
  if (tty)
    fmt::print(stderr, "chatting with {} at {}\n{}; Ctrl-C stops an answer\n", model, o.url,
               chat_help);
  json messages = json::array();
  if (!o.system_prompt.empty())
    messages.push_back({{"role", "system"}, {"content", o.system_prompt}});
  std::string line;
  while (true) {
    clear_interrupt();
    const auto turn = read_chat_turn(tty, line);
    if (turn == chat_turn::quit)
      break;
    if (turn == chat_turn::reset) {
      messages.erase(messages.begin() + (o.system_prompt.empty() ? 0 : 1), messages.end());
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", line}});
    json body = {{"model", model},
                 {"messages", messages},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}},
                 {"max_tokens", o.max_tokens},
                 {"temperature", o.temperature},
                 {"top_p", o.top_p}};
    if (o.top_k > 0)
      body["top_k"] = o.top_k;
    if (o.seed)
      body["seed"] = *o.seed;
    std::string answer, finish, failure;
    std::size_t prompt_tokens = 0, completion_tokens = 0;
    double first_token_seconds = 0;
    const auto start = clock_type::now();
    server::sse_reader sse;
    std::string raw; // the body when it is not an event stream (an error)
    const auto on_body = [&](std::string_view d) {
      raw += d;
      sse.feed(d, [&](const std::string& data) {
        if (data == "[DONE]")
          return;
        try {
          const auto j = json::parse(data);
          if (j.contains("error")) {
            failure = j["error"].value("message", data);
            return;
          }
          if (j.contains("usage") && j["usage"].is_object()) {
            prompt_tokens = j["usage"].value("prompt_tokens", std::size_t{0});
            completion_tokens = j["usage"].value("completion_tokens", std::size_t{0});
          }
          for (const auto& c : j.at("choices")) {
            if (c.contains("delta") && c["delta"].contains("content") &&
                c["delta"]["content"].is_string()) {
              if (first_token_seconds == 0)
                first_token_seconds =
                    std::chrono::duration<double>(clock_type::now() - start).count();
              const auto piece = c["delta"]["content"].get<std::string>();
              answer += piece;
              fmt::print("{}", piece);
              std::fflush(stdout);
            }
            if (c.contains("finish_reason") && c["finish_reason"].is_string())
              finish = c["finish_reason"].get<std::string>();
          }
        } catch (const std::exception& e) {
          failure = std::string("unexpected event: ") + e.what();
        }
      });
    };
    // Ctrl-C closes the connection, which is what makes the server cancel the request.
    auto r = client.request("POST", "/v1/chat/completions", body.dump(), on_body,
                            [] { return take_interrupt(); });
    fmt::print("\n");
    if (!r && r.error().code == errc::cancelled) {
      // As in process: what was said so far stays in the conversation.
      fmt::print(stderr, "[stopped]\n");
      messages.push_back({{"role", "assistant"}, {"content", answer}});
      continue;
    }
    if (!r) {
      fmt::print(stderr, "aegaeon chat: {}\n", r.error().message);
      return 1;
    }
    if (r->status != 200) {
      fmt::print(stderr, "aegaeon chat: the server answered {}: {}\n", r->status, error_text(raw));
      messages.erase(messages.end() - 1);
      continue;
    }
    if (!failure.empty()) {
      fmt::print(stderr, "aegaeon chat: {}\n", failure);
      messages.erase(messages.end() - 1);
      continue;
    }
    if (o.verbose)
      print_answer_stats(prompt_tokens, completion_tokens, finish, first_token_seconds,
                         std::chrono::duration<double>(clock_type::now() - start).count());
    if (finish == "length" && tty)
      fmt::print(stderr, "[the answer reached --max-tokens {}]\n", o.max_tokens);
    messages.push_back({{"role", "assistant"}, {"content", answer}});
  }
  return 0;
}

} // namespace aeg::apps
