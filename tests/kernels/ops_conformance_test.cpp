#include "tests/kernels/ops_conformance.hpp"

namespace aeg::kernels::testing {

INSTANTIATE_TEST_SUITE_P(Cpu, KernelConformance, ::testing::Values("cpu"));

// The CPU's own cases beside the shared ones: a head size the AVX-512 code leaves to the AVX2
// code (a multiple of 8, not of 16), and a step of more decoding rows than twice any machine's
// cores is likely to be, whose rows then share a work item per row across their KV heads.
std::vector<paged_attention_case> cpu_attention_cases() {
  auto cases = attention_cases();
  cases.push_back({2, 4, 72, {50, 20}, {50, 1}});
  // Groups of 7 heads of 128 dims (Qwen2.5-7B's: tiles of 2 rows, values gathered 64 dims at a
  // time twice), and 48 dims, which AVX-512 gathers 16 at a time.
  cases.push_back({2, 14, 128, {45, 33}, {45, 2}});
  cases.push_back({1, 3, 48, {37, 18}, {37, 1}});
  paged_attention_case many{2, 6, 64, {}, {}};
  for (std::size_t s = 0; s < 80; ++s) {
    many.ctx_len.push_back(s == 0 ? 1100 : 5 + s * 7 % 190);
    many.new_tokens.push_back(1);
  }
  cases.push_back(many);
  return cases;
}

// Each instruction set this processor runs computes attention right, and each gives a row the
// same bits alone, beside other sequences, and as a one-row (decoding) call as in a prompt's
// tile, so a recomputed prompt reproduces its decode steps. Instruction sets the processor lacks
// are named and left out.
TEST(CpuAttention, EveryInstructionSetMatchesTheReferenceAndKeepsRowsIndependent) {
  auto run = op_runner::make("cpu");
  ASSERT_TRUE(run) << run.error().to_string();
  std::vector<cpu::attention_isa> isas;
  for (auto isa :
       {cpu::attention_isa::portable, cpu::attention_isa::avx2, cpu::attention_isa::avx512})
    if (isa <= cpu::best_attention_isa())
      isas.push_back(isa);
    else
      std::printf("this processor has no %s code path to test\n",
                  isa == cpu::attention_isa::avx2 ? "AVX2" : "AVX-512");
  for (dtype kv_type : {dtype::f32, dtype::f16})
    for (const auto& c : cpu_attention_cases()) {
      paged_attention_setup setup(**run, kv_type, c);
      (*run)->finish(); // the keys are stored on the stream; read them after it
      const auto reference = setup.reference(c.heads);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
      const std::size_t per_row = c.heads * c.hd;
      auto attend = [&](cpu::attention_isa isa, std::size_t first, std::size_t n) {
        std::vector<float> out(n * per_row);
        cpu::attention(setup.g, 1, setup.q.data() + first * per_row, n, c.heads,
                       setup.positions.data() + first, setup.row_seq.data() + first,
                       setup.table.data(), setup.max_blocks, setup.kv.data(), scale, out.data(),
                       isa);
        return out;
      };
      auto same_bits = [&](const std::vector<float>& part, const std::vector<float>& whole,
                           std::size_t first, const char* what) {
        for (std::size_t i = 0; i < part.size(); ++i)
          if (std::bit_cast<std::uint32_t>(part[i]) !=
              std::bit_cast<std::uint32_t>(whole[first * per_row + i]))
            return ::testing::AssertionFailure()
                   << what << " from row " << first << ", value " << i;
        return ::testing::AssertionSuccess();
      };
      for (auto isa : isas) {
        SCOPED_TRACE(::testing::Message()
                     << "instruction set " << static_cast<int>(isa) << ", " << traits(kv_type).name
                     << ", contexts " << c.ctx_len[0] << "..., head dim " << c.hd);
        const auto together = attend(isa, 0, setup.rows);
        EXPECT_LT(max_relative_error(together, reference), 1e-4f);
        for (std::size_t first = 0, s = 0; s < c.ctx_len.size(); first += c.new_tokens[s++]) {
          ASSERT_TRUE(
              same_bits(attend(isa, first, c.new_tokens[s]), together, first, "a sequence alone"));
          // Every fifth row, and each sequence's last, as a decoding row alone.
          for (std::size_t r = first; r < first + c.new_tokens[s]; ++r)
            if ((r - first) % 5 == 0 || r + 1 == first + c.new_tokens[s])
              ASSERT_TRUE(same_bits(attend(isa, r, 1), together, r, "a row alone"));
        }
      }
    }
}

} // namespace aeg::kernels::testing
