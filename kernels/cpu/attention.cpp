// Causal attention over the paged KV cache, flash-style: keys are visited a KV block (16 tokens)
// at a time with an online softmax, by tiles of queries that share them (the heads of one KV
// group, for up to a few rows of one sequence), so each block is read and widened to float once
// per tile rather than once per query head and row. Keys are cut into chunks of a fixed number
// of blocks: a chunk's softmax state starts afresh and the chunks merge in order, so a query's
// arithmetic is the same whether its chunks run on one thread (prefill tiles) or on several
// (a decode row's chunks are items of their own, so one long sequence keeps every core busy),
// and a row gives the same bits alone or in any batch.

#include "kernels/cpu/attention_steps.hpp"
#include "kernels/cpu/dot.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/parallel.hpp"
#include "kernels/cpu/simd.hpp"
#include "kernels/half.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace aeg::kernels::cpu {
namespace {

constexpr std::size_t block_tokens = kv_geometry::block_tokens;

template <class T>
float load(const void* p, std::size_t i) {
  if constexpr (std::is_same_v<T, float>)
    return static_cast<const float*>(p)[i];
  else
    return half_to_float(static_cast<const std::uint16_t*>(p)[i]);
}

// Where one sequence's K and V of one layer and KV head live.
struct head_view {
  const std::byte* kv;
  const std::int32_t* table; // the sequence's blocks
  std::size_t block_bytes, k_offset, v_offset, token_bytes, head_offset;
  const std::byte* k_block(std::size_t b) const {
    return kv + static_cast<std::size_t>(table[b]) * block_bytes + k_offset + head_offset;
  }
  const std::byte* v_block(std::size_t b) const {
    return kv + static_cast<std::size_t>(table[b]) * block_bytes + v_offset + head_offset;
  }
  const std::byte* k(std::size_t t) const {
    return k_block(t / block_tokens) + t % block_tokens * token_bytes;
  }
  const std::byte* v(std::size_t t) const {
    return v_block(t / block_tokens) + t % block_tokens * token_bytes;
  }
};

// One query row and head against keys 0..n-1, the plain way: scores, softmax, weighted values.
// For CPUs without AVX2 and head sizes the vector path does not take.
template <class T>
void attend_portable(const head_view& h, const float* q, std::size_t hd, std::size_t n, float scale,
                     float* scores, float* out) {
  float max_score = -INFINITY;
  for (std::size_t t = 0; t < n; ++t) {
    const std::byte* k = h.k(t);
    float s = 0;
    for (std::size_t d = 0; d < hd; ++d)
      s += q[d] * load<T>(k, d);
    scores[t] = s * scale;
    max_score = std::max(max_score, scores[t]);
  }
  float total = 0;
  for (std::size_t t = 0; t < n; ++t)
    total += (scores[t] = std::exp(scores[t] - max_score));
  std::fill(out, out + hd, 0.0f);
  for (std::size_t t = 0; t < n; ++t) {
    const std::byte* v = h.v(t);
    for (std::size_t d = 0; d < hd; ++d)
      out[d] += scores[t] * load<T>(v, d);
  }
  const float inv = 1.0f / total;
  for (std::size_t d = 0; d < hd; ++d)
    out[d] *= inv;
}

template <class T>
void attend_rows_portable(const kv_geometry& g, std::size_t layer, const float* q, std::size_t rows,
                          std::size_t heads, const std::int32_t* positions,
                          const std::int32_t* row_seq, const std::int32_t* block_tables,
                          std::size_t max_blocks, const void* kv_base, float scale, float* out) {
  const std::size_t hd = g.head_dim, group = heads / g.kv_heads;
  parallel_for(rows * heads, 1, [&](std::size_t begin, std::size_t end) {
    std::vector<float> scores;
    for (std::size_t item = begin; item < end; ++item) {
      const std::size_t r = item / heads, h = item % heads;
      const std::size_t n = static_cast<std::size_t>(positions[r]) + 1; // causal: keys 0..pos
      const head_view view{static_cast<const std::byte*>(kv_base),
                           block_tables + static_cast<std::size_t>(row_seq[r]) * max_blocks,
                           g.block_bytes(),
                           g.offset(layer, false, 0),
                           g.offset(layer, true, 0),
                           g.token_bytes(),
                           h / group * hd * g.element_bytes()};
      scores.resize(n);
      attend_portable<T>(view, q + (r * heads + h) * hd, hd, n, scale, scores.data(),
                         out + (r * heads + h) * hd);
    }
  });
}

#if defined(__x86_64__)

// Keys per chunk, in blocks: long enough that merging costs nothing, short enough that a decode
// row at a few thousand tokens gives each core several items.
constexpr std::size_t chunk_blocks = 32;
// Queries in a tile (rows × heads of a group): their states and a block in float fit in L1.
constexpr std::size_t tile_queries = 16;
// Blocks ahead whose rows are asked for: enough to cover a memory latency with a block's work.
constexpr std::size_t prefetch_distance = 2;

using attention_steps::block_rows;
using attention_steps::prefetch_rows;

// What every item of one attention call shares.
struct call {
  const kv_geometry& g;
  std::size_t layer, heads, group, hd;
  const float* q;
  const std::int32_t* positions;
  const std::int32_t* row_seq;
  const std::int32_t* block_tables;
  std::size_t max_blocks;
  const std::byte* kv;
  float scale;

  head_view view(std::size_t row, std::size_t kv_head) const {
    return {kv,
            block_tables + static_cast<std::size_t>(row_seq[row]) * max_blocks,
            g.block_bytes(),
            g.offset(layer, false, 0),
            g.offset(layer, true, 0),
            g.token_bytes(),
            kv_head * hd * g.element_bytes()};
  }
  std::size_t keys(std::size_t row) const { return static_cast<std::size_t>(positions[row]) + 1; }
};

// Up to a few consecutive rows of one sequence.
struct tile {
  std::size_t first_row, rows;
};

// Softmax states of a tile's queries over some keys: running max, sum of weights, and the
// weighted sum of values (unnormalized). An empty state has max -∞ and sum 0.
struct states {
  std::size_t hd;
  float* max;
  float* sum;
  float* acc; // [query][hd]

  void clear(std::size_t n) const {
    std::fill(max, max + n, -INFINITY);
    std::fill(sum, sum + n, 0.0f);
    std::fill(acc, acc + n * hd, 0.0f);
  }
};

// Keys the tile's rows see at most (its last row's, as positions grow).
std::size_t most_keys(const call& c, const tile& tl) {
  std::size_t most = 0;
  for (std::size_t i = 0; i < tl.rows; ++i)
    most = std::max(most, c.keys(tl.first_row + i));
  return most;
}

std::size_t chunks_of(const call& c, const tile& tl) {
  return (kv_geometry::blocks_for(most_keys(c, tl)) + chunk_blocks - 1) / chunk_blocks;
}

// The states of a tile's queries over the blocks of chunk `chunk`, from empty, for the KV heads
// kv_head .. kv_head + kv_heads - 1: the query of the h-th of them, row i and head j of its group
// is at (h·rows + i)·group + j. Inlined into one function per instruction set.
template <class T, class Ops>
[[gnu::always_inline]] inline void attend_chunk(const call& c, const tile& tl, std::size_t kv_head,
                                                std::size_t kv_heads, std::size_t chunk,
                                                const states& st) {
  const std::size_t per_head = tl.rows * c.group;
  st.clear(kv_heads * per_head);
  const std::size_t most = most_keys(c, tl);
  const head_view view = c.view(tl.first_row, kv_head);
  const std::size_t first = chunk * chunk_blocks;
  const std::size_t last = std::min(first + chunk_blocks, kv_geometry::blocks_for(most));
  thread_local block_rows<T> k, v;
  const std::size_t row_bytes = c.hd * sizeof(T);
  struct query_step {
    std::size_t qi, valid;
    float correction;
  };
  thread_local std::vector<query_step> work;
  thread_local std::vector<float> weights;
  work.resize(per_head);
  weights.resize(per_head * block_tokens);
  for (std::size_t b = first; b < last; ++b) {
    const std::size_t start = b * block_tokens;
    const std::size_t in_block = std::min(block_tokens, most - start);
    // The next block lies anywhere in the cache, where no hardware prefetcher looks: ask for
    // its rows now, so that they arrive while this block is worked on. With every KV head, a
    // layer's keys (and its values) of a block are one contiguous run.
    for (std::size_t ahead = b == first ? b + 1 : b + prefetch_distance;
         ahead <= b + prefetch_distance && ahead < last; ++ahead) {
      prefetch_rows(view.k_block(ahead), c.g.token_bytes(), kv_heads * row_bytes);
      prefetch_rows(view.v_block(ahead), c.g.token_bytes(), kv_heads * row_bytes);
    }
    for (std::size_t h = 0; h < kv_heads; ++h) {
      Ops::load(k, view.k_block(b) + h * row_bytes, c.g.token_bytes(), c.hd, in_block);
      Ops::load(v, view.v_block(b) + h * row_bytes, c.g.token_bytes(), c.hd, in_block);
      // Scores are computed for whole blocks: the unused rows point at a loaded row.
      for (std::size_t t = in_block; t < block_tokens; ++t)
        k.row[t] = k.row[0];
      // Every query's scores, then every softmax step, then every value update: the queries'
      // dependency chains (a dot product, a max, an exponential, then the values) interleave.
      // Each query's arithmetic is the same as if it ran alone.
      std::size_t active = 0;
      for (std::size_t i = 0; i < tl.rows; ++i) {
        const std::size_t keys = c.keys(tl.first_row + i);
        if (keys <= start)
          continue; // this row sees none of the block
        const std::size_t valid = std::min(block_tokens, keys - start);
        for (std::size_t j = 0; j < c.group; ++j, ++active) {
          const std::size_t head = (kv_head + h) * c.group + j;
          work[active] = {h * per_head + i * c.group + j, valid, 0.0f};
          Ops::score(c.q + ((tl.first_row + i) * c.heads + head) * c.hd, c.hd, c.scale, valid,
                     k.row, weights.data() + active * block_tokens);
        }
      }
      for (std::size_t a = 0; a < active; ++a)
        work[a].correction =
            Ops::softmax(weights.data() + a * block_tokens, st.max[work[a].qi], st.sum[work[a].qi]);
      for (std::size_t a = 0; a < active; ++a)
        Ops::accumulate(st.acc + work[a].qi * c.hd, work[a].correction,
                        weights.data() + a * block_tokens, v.row, work[a].valid, c.hd);
    }
  }
}

// attend_chunk compiled for each instruction set.
using chunk_kernel = void (*)(const call&, const tile&, std::size_t, std::size_t, std::size_t,
                              const states&);

template <class T>
AEG_AVX2_TARGET void attend_chunk_avx2(const call& c, const tile& tl, std::size_t kv_head,
                                       std::size_t kv_heads, std::size_t chunk, const states& st) {
  attend_chunk<T, attention_steps::avx2>(c, tl, kv_head, kv_heads, chunk, st);
}

template <class T>
AEG_AVX512_TARGET void attend_chunk_avx512(const call& c, const tile& tl, std::size_t kv_head,
                                           std::size_t kv_heads, std::size_t chunk,
                                           const states& st) {
  attend_chunk<T, attention_steps::avx512>(c, tl, kv_head, kv_heads, chunk, st);
}

// into ← into ⊕ part, query by query; an empty part changes nothing.
AEG_AVX2_TARGET void merge(const states& into, const states& part, std::size_t nq) {
  for (std::size_t qi = 0; qi < nq; ++qi) {
    if (part.sum[qi] == 0)
      continue;
    const float m = std::max(into.max[qi], part.max[qi]);
    const __m256 a = exp8(_mm256_set1_ps(into.max[qi] - m));
    const __m256 b = exp8(_mm256_set1_ps(part.max[qi] - m));
    into.sum[qi] = into.sum[qi] * _mm256_cvtss_f32(a) + part.sum[qi] * _mm256_cvtss_f32(b);
    into.max[qi] = m;
    float* x = into.acc + qi * into.hd;
    const float* y = part.acc + qi * part.hd;
    for (std::size_t d = 0; d < into.hd; d += 8)
      _mm256_storeu_ps(x + d, _mm256_fmadd_ps(_mm256_loadu_ps(y + d), b,
                                              _mm256_mul_ps(_mm256_loadu_ps(x + d), a)));
  }
}

// The tile's output rows for KV heads kv_head .. kv_head + kv_heads - 1: acc / sum.
AEG_AVX2_TARGET void finish(const call& c, const tile& tl, std::size_t kv_head,
                            std::size_t kv_heads, const states& st, float* out) {
  for (std::size_t h = 0; h < kv_heads; ++h)
    for (std::size_t i = 0; i < tl.rows; ++i)
      for (std::size_t j = 0; j < c.group; ++j) {
        const std::size_t qi = (h * tl.rows + i) * c.group + j, head = (kv_head + h) * c.group + j;
        const __m256 inv = _mm256_set1_ps(1.0f / st.sum[qi]);
        float* o = out + ((tl.first_row + i) * c.heads + head) * c.hd;
        for (std::size_t d = 0; d < c.hd; d += 8)
          _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(st.acc + qi * c.hd + d), inv));
      }
}

// Room for the states of `n` queries.
struct state_buffer {
  std::vector<float> data;
  states at(std::size_t hd, std::size_t n) {
    data.resize(n * (hd + 2));
    return {hd, data.data(), data.data() + n, data.data() + 2 * n};
  }
};

// The states from query `offset` on.
states from(const states& s, std::size_t offset) {
  return {s.hd, s.max + offset, s.sum + offset, s.acc + offset * s.hd};
}

// A unit of parallel work: a whole tile over some KV heads (its chunks in order on one
// thread), or one chunk of a one-row tile over some KV heads, whose states go to the scratch
// states at `slot` to be merged after.
struct item {
  std::size_t tile, kv_head, kv_heads, chunk, slot;
  bool whole;
};

// Rows cut into tiles: up to `per_tile` consecutive rows of one sequence.
std::vector<tile> tiles_of(const std::int32_t* row_seq, std::size_t rows, std::size_t per_tile) {
  std::vector<tile> tiles;
  for (std::size_t r = 0; r < rows;) {
    std::size_t n = 1;
    while (n < per_tile && r + n < rows && row_seq[r + n] == row_seq[r])
      ++n;
    tiles.push_back({r, n});
    r += n;
  }
  return tiles;
}

void attend_tiles(const call& c, std::size_t rows, float* out, chunk_kernel attend) {
  const auto tiles = tiles_of(c.row_seq, rows, std::max<std::size_t>(1, tile_queries / c.group));
  // A decoding row takes its KV heads together, so that a layer's keys of a block are read as
  // one run, unless the step's decoding rows would then leave cores idle (one row over a short
  // context). Either way each query's arithmetic is the same.
  std::size_t decode_items = 0;
  for (const tile& tl : tiles)
    decode_items += tl.rows == 1 ? chunks_of(c, tl) : 0;
  const std::size_t heads_together = decode_items >= 2 * num_compute_threads() ? c.g.kv_heads : 1;
  std::vector<item> items;
  std::size_t scratch_queries = 0;
  for (std::size_t t = tiles.size(); t-- > 0;) { // the latest tiles, the costliest, first
    const std::size_t chunks = chunks_of(c, tiles[t]);
    if (tiles[t].rows > 1) { // rows of a prompt: a tile per KV head, its queries share the keys
      for (std::size_t kvh = 0; kvh < c.g.kv_heads; ++kvh)
        items.push_back({t, kvh, 1, 0, 0, true});
      continue;
    }
    // A decoding row: over a long context, a chunk per item keeps every core busy.
    for (std::size_t kvh = 0; kvh < c.g.kv_heads; kvh += heads_together) {
      if (chunks == 1) {
        items.push_back({t, kvh, heads_together, 0, 0, true});
        continue;
      }
      for (std::size_t ch = 0; ch < chunks; ++ch, scratch_queries += heads_together * c.group)
        items.push_back({t, kvh, heads_together, ch, scratch_queries, false});
    }
  }
  state_buffer scratch_buffer;
  const states scratch = scratch_buffer.at(c.hd, scratch_queries);
  parallel_for(items.size(), 1, [&](std::size_t begin, std::size_t end) {
    thread_local state_buffer running_buffer, part_buffer;
    for (std::size_t i = begin; i < end; ++i) {
      const item& it = items[i];
      const tile& tl = tiles[it.tile];
      if (!it.whole) {
        attend(c, tl, it.kv_head, it.kv_heads, it.chunk, from(scratch, it.slot));
        continue;
      }
      const std::size_t nq = it.kv_heads * tl.rows * c.group;
      const states running = running_buffer.at(c.hd, nq), part = part_buffer.at(c.hd, nq);
      attend(c, tl, it.kv_head, it.kv_heads, 0, running);
      for (std::size_t ch = 1, chunks = chunks_of(c, tl); ch < chunks; ++ch) {
        attend(c, tl, it.kv_head, it.kv_heads, ch, part);
        merge(running, part, nq);
      }
      finish(c, tl, it.kv_head, it.kv_heads, running, out);
    }
  });
  // The chunks of one-row tiles, merged in order as a whole tile's are.
  for (std::size_t i = 0; i < items.size();) {
    const item& first = items[i];
    std::size_t n = first.whole ? 1 : chunks_of(c, tiles[first.tile]);
    if (!first.whole) {
      const std::size_t nq = first.kv_heads * c.group;
      const states running = from(scratch, first.slot);
      for (std::size_t ch = 1; ch < n; ++ch)
        merge(running, from(scratch, first.slot + ch * nq), nq);
      finish(c, tiles[first.tile], first.kv_head, first.kv_heads, running, out);
    }
    i += n;
  }
}

bool detect_avx512() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}

#endif

} // namespace

attention_isa best_attention_isa() noexcept {
#if defined(__x86_64__)
  static const bool avx512 = detect_avx512();
  if (uses_avx2())
    return avx512 ? attention_isa::avx512 : attention_isa::avx2;
#endif
  return attention_isa::portable;
}

void attention(const kv_geometry& g, std::size_t layer, const float* q, std::size_t rows,
               std::size_t heads, const std::int32_t* positions, const std::int32_t* row_seq,
               const std::int32_t* block_tables, std::size_t max_blocks, const void* kv_base,
               float scale, float* out) {
  attention(g, layer, q, rows, heads, positions, row_seq, block_tables, max_blocks, kv_base, scale,
            out, best_attention_isa());
}

void attention(const kv_geometry& g, std::size_t layer, const float* q, std::size_t rows,
               std::size_t heads, const std::int32_t* positions, const std::int32_t* row_seq,
               const std::int32_t* block_tables, std::size_t max_blocks, const void* kv_base,
               float scale, float* out, attention_isa isa) {
  isa = std::min(isa, best_attention_isa()); // never code this processor cannot run
#if defined(__x86_64__)
  if (isa != attention_isa::portable && g.head_dim % 8 == 0 && g.head_dim <= 256) {
    const call c{g,
                 layer,
                 heads,
                 heads / g.kv_heads,
                 g.head_dim,
                 q,
                 positions,
                 row_seq,
                 block_tables,
                 max_blocks,
                 static_cast<const std::byte*>(kv_base),
                 scale};
    const bool wide = isa == attention_isa::avx512 && g.head_dim % 16 == 0;
    if (g.type == dtype::f32)
      attend_tiles(c, rows, out, wide ? &attend_chunk_avx512<float> : &attend_chunk_avx2<float>);
    else
      attend_tiles(c, rows, out,
                   wide ? &attend_chunk_avx512<std::uint16_t> : &attend_chunk_avx2<std::uint16_t>);
    return;
  }
#endif
  if (g.type == dtype::f32)
    attend_rows_portable<float>(g, layer, q, rows, heads, positions, row_seq, block_tables,
                                max_blocks, kv_base, scale, out);
  else
    attend_rows_portable<std::uint16_t>(g, layer, q, rows, heads, positions, row_seq, block_tables,
                                        max_blocks, kv_base, scale, out);
}

} // namespace aeg::kernels::cpu
