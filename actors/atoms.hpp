#pragma once

#include <caf/atom.hpp>

namespace aeg::actors {

/// Resumes a coroutine inside the receiving actor (sent by `actor_executor`).
using resume_atom = caf::atom_constant<caf::atom("resume")>;

} // namespace aeg::actors
