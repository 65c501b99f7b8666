#include "models/gguf/types.hpp"

#include "coro/assert.hpp"

#include <array>

namespace aeg::models::gguf {

namespace {

// ggml's names for type ids 0..41, so that an unsupported type is named in the error.
// clang-format off
constexpr std::array<std::string_view, 42> ggml_names = {
    "F32",     "F16",     "Q4_0",    "Q4_1",    "Q4_2 (removed)", "Q4_3 (removed)", "Q5_0",
    "Q5_1",    "Q8_0",    "Q8_1",    "Q2_K",    "Q3_K",           "Q4_K",           "Q5_K",
    "Q6_K",    "Q8_K",    "IQ2_XXS", "IQ2_XS",  "IQ3_XXS",        "IQ1_S",          "IQ4_NL",
    "IQ3_S",   "IQ2_S",   "IQ4_XS",  "I8",      "I16",            "I32",            "I64",
    "F64",     "IQ1_M",   "BF16",    "Q4_0_4_4 (removed)", "Q4_0_4_8 (removed)",
    "Q4_0_8_8 (removed)", "TQ1_0",   "TQ2_0",   "IQ4_NL_4_4 (removed)", "IQ4_NL_4_8 (removed)",
    "IQ4_NL_8_8 (removed)", "MXFP4", "NVFP4",   "Q1_0",
};
// clang-format on

} // namespace

result<type_traits> traits_of(std::uint32_t type) {
  switch (static_cast<tensor_type>(type)) {
  case tensor_type::f32:
    return type_traits{"F32", 1, 4};
  case tensor_type::f16:
    return type_traits{"F16", 1, 2};
  case tensor_type::bf16:
    return type_traits{"BF16", 1, 2};
  case tensor_type::q4_0:
    return type_traits{"Q4_0", 32, 18};
  case tensor_type::q4_1:
    return type_traits{"Q4_1", 32, 20};
  case tensor_type::q5_0:
    return type_traits{"Q5_0", 32, 22};
  case tensor_type::q8_0:
    return type_traits{"Q8_0", 32, 34};
  case tensor_type::q4_k:
    return type_traits{"Q4_K", 256, 144};
  case tensor_type::q6_k:
    return type_traits{"Q6_K", 256, 210};
  case tensor_type::q2_k:
    return type_traits{"Q2_K", 256, 84};
  case tensor_type::q3_k:
    return type_traits{"Q3_K", 256, 110};
  case tensor_type::q5_k:
    return type_traits{"Q5_K", 256, 176};
  case tensor_type::iq4_nl:
    return type_traits{"IQ4_NL", 32, 18};
  case tensor_type::iq4_xs:
    return type_traits{"IQ4_XS", 256, 136};
  }
  std::string name = type < ggml_names.size() ? std::string(ggml_names[type])
                                              : "unknown type id " + std::to_string(type);
  return fail(errc::invalid_argument,
              "tensor type " + name +
                  " is not supported; supported: F32, F16, BF16, Q8_0, Q4_0, "
                  "Q4_1, Q5_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS (re-quantize the "
                  "model to one of them)");
}

std::string_view name_of(tensor_type type) {
  auto t = traits_of(static_cast<std::uint32_t>(type));
  return t ? t->name : std::string_view("?");
}

kernels::dtype to_dtype(tensor_type type) noexcept {
  switch (type) {
  case tensor_type::f32:
    return kernels::dtype::f32;
  case tensor_type::f16:
    return kernels::dtype::f16;
  case tensor_type::bf16:
    return kernels::dtype::bf16;
  case tensor_type::q8_0:
    return kernels::dtype::q8_0;
  case tensor_type::q4_0:
    return kernels::dtype::q4_0;
  case tensor_type::q4_1:
    return kernels::dtype::q4_1;
  case tensor_type::q5_0:
    return kernels::dtype::q5_0;
  case tensor_type::q4_k:
    return kernels::dtype::q4_k;
  case tensor_type::q6_k:
    return kernels::dtype::q6_k;
  case tensor_type::q2_k:
    return kernels::dtype::q2_k;
  case tensor_type::q3_k:
    return kernels::dtype::q3_k;
  case tensor_type::q5_k:
    return kernels::dtype::q5_k;
  case tensor_type::iq4_nl:
    return kernels::dtype::iq4_nl;
  case tensor_type::iq4_xs:
    return kernels::dtype::iq4_xs;
  }
  // Only a cast of an unchecked id gets here: the reader admits supported types only.
  AEG_ASSERT(false, "to_dtype: tensor_type holds an id that traits_of() would have refused");
  return kernels::dtype::f32;
}

tensor_type to_tensor_type(kernels::dtype type) noexcept {
  switch (type) {
  case kernels::dtype::f32:
    return tensor_type::f32;
  case kernels::dtype::f16:
    return tensor_type::f16;
  case kernels::dtype::bf16:
    return tensor_type::bf16;
  case kernels::dtype::q8_0:
    return tensor_type::q8_0;
  case kernels::dtype::q4_0:
    return tensor_type::q4_0;
  case kernels::dtype::q4_1:
    return tensor_type::q4_1;
  case kernels::dtype::q5_0:
    return tensor_type::q5_0;
  case kernels::dtype::q4_k:
    return tensor_type::q4_k;
  case kernels::dtype::q6_k:
    return tensor_type::q6_k;
  case kernels::dtype::q2_k:
    return tensor_type::q2_k;
  case kernels::dtype::q3_k:
    return tensor_type::q3_k;
  case kernels::dtype::q5_k:
    return tensor_type::q5_k;
  case kernels::dtype::iq4_nl:
    return tensor_type::iq4_nl;
  case kernels::dtype::iq4_xs:
    return tensor_type::iq4_xs;
  case kernels::dtype::q4_1x8:
  case kernels::dtype::q8_0x8:
  case kernels::dtype::q5_1:
  case kernels::dtype::q5_1x8:
  case kernels::dtype::q6_kx8:
  case kernels::dtype::q3_kx8:
  case kernels::dtype::q2_kx8:
    break; // compute layouts of the CPU; never stored in a file we read
  }
  AEG_ASSERT(false, "to_tensor_type: this dtype has no GGUF tensor type");
  return tensor_type::f32;
}

} // namespace aeg::models::gguf
