#pragma once

#include <string_view>

namespace aeg::server {

/// The live view's page (`GET /dashboard`): one self-contained HTML document, its CSS and script
/// inline, that polls `GET /status` every second and shows each instance's resident and
/// prefetched model, its sequences and KV, a table of the models' queues, rates and SLO
/// attainment, and a strip of the last minute's switches per instance. It loads nothing from
/// anywhere else. An API key comes from `?key=` or from a field the page shows on a 401. Stable
/// hooks for tests and scripts: `#models` rows `tr[data-model]`, `#instances` cards
/// `[data-instance]`, `#timeline` lanes `[data-instance]`, counters `#finished-total`,
/// `#tokens-total`, `#tokens-per-second-total`, and `body[data-updates]` counting the answers
/// shown.
std::string_view dashboard_html();

/// The Content-Security-Policy the page is served with: inline style and script, requests to
/// its own origin only, no frames around it.
inline constexpr std::string_view dashboard_csp =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

} // namespace aeg::server
