#include "kernels/context.hpp"

#if AEG_HAS_CUDA
#include "kernels/cuda/ops.hpp"
#endif

namespace aeg::kernels {

result<std::unique_ptr<context>> context::create(gpu::stream& s) {
  std::unique_ptr<context> ctx(new context(s));
  if (s.kind() == gpu::backend_kind::cuda) {
#if AEG_HAS_CUDA
    if (auto r = s.make_current(); !r)
      return tl::unexpected(r.error());
    auto blas = cuda::create_blas(s.native_handle());
    if (!blas)
      return tl::unexpected(blas.error());
    ctx->blas_ = *blas;
#else
    return fail(errc::unavailable, "this build has no CUDA kernels");
#endif
  }
  return ctx;
}

context::~context() {
#if AEG_HAS_CUDA
  if (blas_)
    cuda::destroy_blas(blas_);
#endif
}

} // namespace aeg::kernels
