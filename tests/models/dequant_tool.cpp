// Reads raw rows from stdin and writes what the kernels make of them to stdout, for
// dequant_reference.py to compare with PyPI gguf's numpy (de)quantizers:
//   dequant_tool dequantize TYPE N   reads the bytes of N values of TYPE, writes N float32
//   dequant_tool quantize TYPE N     reads N float32, writes the bytes of N values of TYPE
//   dequant_tool transcode TYPE N    reads the bytes of N values of TYPE, writes them as
//                                    kernels::transcoded_type(TYPE) (Q4_K → Q4_1, Q5_K → Q5_1)
//   dequant_tool interleave TYPE N   reads the bytes of 8 rows of N / 8 values of TYPE, lays
//                                    them out as the CPU computes with such a matrix (transcoded
//                                    first where TYPE transcodes, then 8 rows interleaved) and
//                                    writes the rows read back from that, N float32
// TYPE is a ggml type name (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K…Q6_K); N is a
// multiple of its block size. Exits 2 on bad arguments or short input.

#include "kernels/dtype.hpp"
#include "kernels/quant.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using aeg::kernels::dtype;

bool dtype_named(const std::string& name, dtype& out) {
  for (auto t : {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0, dtype::q4_0, dtype::q4_1,
                 dtype::q5_0, dtype::q5_1, dtype::q2_k, dtype::q3_k, dtype::q4_k, dtype::q5_k,
                 dtype::q6_k, dtype::iq4_nl, dtype::iq4_xs})
    if (aeg::kernels::traits(t).name == name) {
      out = t;
      return true;
    }
  return false;
}

bool read_all(void* dst, std::size_t bytes) {
  return std::fread(dst, 1, bytes, stdin) == bytes;
}

bool write_all(const void* src, std::size_t bytes) {
  return std::fwrite(src, 1, bytes, stdout) == bytes && std::fflush(stdout) == 0;
}

int usage(const char* why) {
  std::fprintf(stderr,
               "dequant_tool: %s\nusage: dequant_tool dequantize|quantize|transcode|interleave "
               "TYPE N\n",
               why);
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 4)
    return usage("expected 3 arguments");
  const std::string op = argv[1];
  dtype t{};
  if (!dtype_named(argv[2], t))
    return usage("unknown TYPE");
  const std::size_t n = std::strtoull(argv[3], nullptr, 10);
  if (n == 0 || n % aeg::kernels::traits(t).block_elems != 0)
    return usage("N must be a positive multiple of the block size");
  std::vector<unsigned char> row(aeg::kernels::row_bytes(t, n));
  std::vector<float> values(n);
  if (op == "dequantize") {
    if (!read_all(row.data(), row.size()))
      return usage("short input");
    aeg::kernels::dequantize_row(t, row.data(), values.data(), n);
    return write_all(values.data(), n * sizeof(float)) ? 0 : 2;
  }
  if (op == "quantize") {
    if (!aeg::kernels::can_quantize(t))
      return usage("kernels cannot quantize TYPE");
    if (!read_all(values.data(), n * sizeof(float)))
      return usage("short input");
    aeg::kernels::quantize_row(t, values.data(), row.data(), n);
    return write_all(row.data(), row.size()) ? 0 : 2;
  }
  if (op == "transcode") {
    const auto to = aeg::kernels::transcoded_type(t);
    if (!to)
      return usage("kernels cannot transcode TYPE");
    if (!read_all(row.data(), row.size()))
      return usage("short input");
    std::vector<unsigned char> out(aeg::kernels::row_bytes(*to, n));
    aeg::kernels::transcode_row(t, row.data(), out.data(), n);
    return write_all(out.data(), out.size()) ? 0 : 2;
  }
  if (op == "interleave") {
    const std::size_t cols = n / 8;
    const auto plain = aeg::kernels::transcoded_type(t).value_or(t);
    const auto x8 = aeg::kernels::interleaved_type(plain);
    if (!x8 || n % 8 != 0 || cols % aeg::kernels::traits(t).block_elems != 0)
      return usage("TYPE does not interleave, or N is not 8 rows of whole blocks");
    if (!read_all(row.data(), row.size()))
      return usage("short input");
    std::vector<unsigned char> rows(aeg::kernels::row_bytes(plain, n));
    if (plain == t)
      rows = row;
    else
      for (std::size_t r = 0; r < 8; ++r)
        aeg::kernels::transcode_row(t, row.data() + r * aeg::kernels::row_bytes(t, cols),
                                    rows.data() + r * aeg::kernels::row_bytes(plain, cols), cols);
    std::vector<unsigned char> inter(aeg::kernels::row_bytes(*x8, n));
    aeg::kernels::interleave_rows(plain, rows.data(), 8, cols, inter.data());
    for (std::size_t r = 0; r < 8; ++r)
      aeg::kernels::dequantize_interleaved_row(*x8, inter.data(), r, cols,
                                               values.data() + r * cols);
    return write_all(values.data(), n * sizeof(float)) ? 0 : 2;
  }
  return usage("unknown operation");
}
