#pragma once

#include "actors/sched/switch_policy.hpp"
#include "actors/step_plan.hpp"
#include "coro/error.hpp"

namespace aeg::actors {

/// What an instance's switch policy sees at a step boundary: the models with work (not blocked,
/// unless every one is), in the order their work arrived, with their estimates.
sched::instance_view policy_view(const step_view& v);

/// Plans an instance's next step from its view and its policy's decision: the switch (scale the
/// active model down, the chosen one up, the leaving model's KV out when asked), the turn's
/// batch and its KV coming in, the prefetch, and the step itself: every running sequence of the
/// batch with its next chunk, then waiting ones in arrival order while the token budget, the
/// sequence limit and KV blocks last. When KV runs out, the newest sequences of the batch move
/// to an overflow batch with their KV on the host, or give it back to be recomputed when the
/// host is full too; a context that can never fit ends with an error. When nothing can step,
/// the plan says whether to await KV on its way or to yield; when every model with work is
/// blocked, something gives (host KV is given up, else the oldest waiting request or the newest
/// running one ends). Pure: the same view and decision give the same plan. An error only when
/// the decision names a model the view does not have.
result<step_plan> plan_step(const step_view& v, const sched::turn_decision& decision);
/// The same plan, made on `v` itself instead of a copy: `v` is left as the plan changed it (the
/// instance's view, which it rebuilds before the next plan). The models' turns and blocked
/// flags stay in `v` (the plan's `turns` and `blocked` are left empty): the instance keeps them
/// there from one plan to the next.
result<step_plan> plan_step_in_place(step_view& v, const sched::turn_decision& decision);

} // namespace aeg::actors
