#include "tests/kernels/ops_conformance.hpp"

namespace aeg::kernels::testing {

INSTANTIATE_TEST_SUITE_P(Cpu, KernelConformance, ::testing::Values("cpu"));

// Each instruction set this processor runs computes attention right, and each keeps a row's bits
// independent of the rest of the batch (a sequence's rows alone or beside others).
TEST(CpuAttention, EveryInstructionSetMatchesTheReferenceAndKeepsRowsIndependent) {
  auto run = op_runner::make("cpu");
  ASSERT_TRUE(run) << run.error().to_string();
  std::vector<cpu::attention_isa> isas;
  for (auto isa :
       {cpu::attention_isa::portable, cpu::attention_isa::avx2, cpu::attention_isa::avx512})
    if (isa <= cpu::best_attention_isa())
      isas.push_back(isa);
  for (dtype kv_type : {dtype::f32, dtype::f16})
    for (const auto& c : attention_cases()) {
      paged_attention_setup setup(**run, kv_type, c);
      const auto reference = setup.reference(c.heads);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
      auto attend = [&](cpu::attention_isa isa, std::size_t first, std::size_t n) {
        std::vector<float> out(n * c.heads * c.hd);
        cpu::attention(setup.g, 1, setup.q.data() + first * c.heads * c.hd, n, c.heads,
                       setup.positions.data() + first, setup.row_seq.data() + first,
                       setup.table.data(), setup.max_blocks, setup.kv.data(), scale, out.data(),
                       isa);
        return out;
      };
      for (auto isa : isas) {
        const auto together = attend(isa, 0, setup.rows);
        EXPECT_LT(max_relative_error(together, reference), 1e-4f)
            << "instruction set " << static_cast<int>(isa) << ", " << traits(kv_type).name
            << ", contexts " << c.ctx_len[0] << "..., head dim " << c.hd;
        for (std::size_t first = 0, s = 0; s < c.ctx_len.size(); first += c.new_tokens[s++]) {
          const auto alone = attend(isa, first, c.new_tokens[s]);
          for (std::size_t i = 0; i < alone.size(); ++i)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(alone[i]),
                      std::bit_cast<std::uint32_t>(together[first * c.heads * c.hd + i]))
                << "instruction set " << static_cast<int>(isa) << ", sequence " << s << ", value "
                << i;
        }
      }
    }
}

} // namespace aeg::kernels::testing
