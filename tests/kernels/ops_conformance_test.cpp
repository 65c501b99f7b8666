#include "tests/kernels/ops_conformance.hpp"

namespace aeg::kernels::testing {

INSTANTIATE_TEST_SUITE_P(Cpu, KernelConformance, ::testing::Values("cpu"));

} // namespace aeg::kernels::testing
