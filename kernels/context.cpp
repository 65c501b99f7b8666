#include "kernels/context.hpp"

#include "kernels/cuda/ops.hpp"

namespace aeg::kernels {

result<std::unique_ptr<context>> context::create(gpu::stream& s) {
  std::unique_ptr<context> ctx(new context(s));
  if (s.kind() == gpu::backend_kind::cuda) {
    AEG_TRY(s.make_current());
    AEG_TRY_ASSIGN(ctx->blas_, cuda::create_blas(s.native_handle()));
  }
  return ctx;
}

context::~context() {
  if (blas_)
    cuda::destroy_blas(blas_);
  if (attention_scratch_.data && stream_.make_current())
    cuda::release(stream_.native_handle(), attention_scratch_);
}

} // namespace aeg::kernels
