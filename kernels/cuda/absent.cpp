// The CUDA kernels' entry points in a build without the CUDA toolkit: each says so. A stream of
// the CUDA backend cannot exist in such a build (gpu/registry.cpp makes none), so these only keep
// the dispatch in kernels/ free of build switches.

#include "kernels/cuda/axpy.hpp"
#include "kernels/cuda/ops.hpp"

namespace aeg::kernels::cuda {

namespace {

tl::unexpected<error> absent() {
  return fail(errc::unavailable, "this build has no CUDA kernels (the CUDA toolkit was not found "
                                 "when it was configured)");
}

} // namespace

result<void*> create_blas(void*) noexcept {
  return absent();
}
void destroy_blas(void*) noexcept {}
result<void> embed(void*, const matrix&, const std::int32_t*, std::size_t, float*) noexcept {
  return absent();
}
result<void> rmsnorm(void*, const float*, const float*, std::size_t, std::size_t, float,
                     float*) noexcept {
  return absent();
}
result<void> matmul(void*, void*, const matrix&, const float*, std::size_t, float*,
                    void*) noexcept {
  return absent();
}
result<void> rope(void*, float*, std::size_t, std::size_t, std::size_t, std::size_t,
                  const std::int32_t*, float, const float*) noexcept {
  return absent();
}
result<void> kv_store(void*, const kv_geometry&, std::size_t, const float*, const float*,
                      std::size_t, const std::int32_t*, void*) noexcept {
  return absent();
}
result<void> attention(void*, const kv_geometry&, std::size_t, const float*, std::size_t,
                       std::size_t, const std::int32_t*, const std::int32_t*, const std::int32_t*,
                       std::size_t, const void*, float, float*, attention_hint,
                       device_scratch&) noexcept {
  return absent();
}
void release(void*, device_scratch&) noexcept {}
result<void> swiglu(void*, const float*, const float*, std::size_t, float*) noexcept {
  return absent();
}
result<void> add(void*, float*, const float*, std::size_t) noexcept {
  return absent();
}
result<void> add_bias(void*, float*, const float*, std::size_t, std::size_t) noexcept {
  return absent();
}
result<void> gather_rows(void*, const float*, const std::int32_t*, std::size_t, std::size_t,
                         float*) noexcept {
  return absent();
}
result<void> sample(void*, const float*, std::size_t, std::size_t, const sampling_row*,
                    std::int32_t*) noexcept {
  return absent();
}
result<void> axpy(void*, float, const float*, float*, std::size_t) noexcept {
  return absent();
}

} // namespace aeg::kernels::cuda
