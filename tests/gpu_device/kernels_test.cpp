#include "tests/kernels/ops_conformance.hpp"

namespace aeg::kernels::testing {

// Every CUDA op against the float reference and the CPU twin's rule; skipped without a GPU.
INSTANTIATE_TEST_SUITE_P(Cuda, KernelConformance, ::testing::Values("cuda"));

} // namespace aeg::kernels::testing
