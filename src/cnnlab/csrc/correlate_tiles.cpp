// Direct convolution of float32 and bfloat16 data, channels-last (NHWC), 2-D: forward, input gradient
// and weight gradient on cnnlab's own AVX-512 microkernel (float32 accumulators: vfmadd231ps for
// float32, vdpbf16ps for bfloat16). Compiled into every x86-64 build; run where the CPU has
// AVX512-BF16 (`tiles_supported` in correlate.cpp). correlate_tiles_avx2.cpp compiles this file
// again for AVX2 + FMA (namespace tiles::avx2, float32 only): a "vector" of 16 columns is two ymm
// registers there, and tiles are 6 × 16 (12 accumulators of the 16 registers); CPUs with AVX2 and
// no AVX-512 run those where the product's shape suits them (correlate.cpp), brgemm the rest.
//
// The microkernel computes an MR × (16·NV) tile of C = Σ_terms A_term · B_term with the
// accumulators in registers across every term (kernel tap) and the whole inner dimension K:
//     C[m][n] = Σ_t Σ_k A_t[m][k] · B_t[k][n]
// Each row m of A_t is its own pointer (K contiguous values; a shared zero row stands for
// padding), so one kernel serves all three products without column matrices:
// - forward: rows are output pixels, A_t[m] the input pixel tap t reads, B_t the tap's filters
//   [C × O]; the tile is stored in the data's type;
// - input gradient: rows are input pixels of one residue class modulo the stride, A_t[m] the
//   output-gradient pixel that reaches them through tap t, B_t the tap's filters transposed;
// - weight gradient: rows are output channels, K runs over output positions (the gradient
//   transposed, [O × positions]), B the tap's input pixels; the tile is added to a float32
//   accumulator.
// B is packed by pairs of k rows, 2·NP values per pair (N padded to NP, a multiple of 16): for
// bfloat16 interleaved ([N][2], as vdpbf16ps multiplies two bfloat16 pairs into one float32 lane:
// C[m][n] += A[m][2k]·B[2k][n] + A[m][2k+1]·B[2k+1][n]), for float32 one row after the other.

#include "correlate_tiles.h"

#if defined(CNNLAB_TILES_AVX2)
#define CNNLAB_TILES_ISA avx2
#else
#define CNNLAB_TILES_ISA avx512
#endif

#if defined(__x86_64__)

#if defined(CNNLAB_TILES_AVX2)
#pragma GCC target("avx2,fma")  // only called where the CPU has them
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")  // only called where the CPU has them
#endif

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

namespace cnnlab {
namespace tiles {
namespace CNNLAB_TILES_ISA {
namespace {

using bits = uint16_t;  // bfloat16 as stored

constexpr int kMR = 12;              // most rows per tile (the row pointers are laid out kMR per term)
constexpr int64_t kPositions = 256;  // output pixels per weight-gradient block (K of its products; even)
constexpr int64_t kChunk = 16;       // tiles that share each block of filters while it sits in L2

// Tile shape for products with n columns: 6 rows × 64 columns (24 accumulators; each k step loads
// 4 B vectors and 6 broadcasts for 24 multiply-adds) where n allows, else 12 × 32 (12 row
// pointers and 2 B vectors for 24). AVX2: 6 × 16 (12 ymm accumulators, 2 B vectors, 1 broadcast).
struct Blocking {
  int64_t rows, columns;
};
#if defined(CNNLAB_TILES_AVX2)
const int64_t kWideRows = knob("CNNLAB_TILE_ROWS", 6), kWideColumns = 16;
Blocking blocking(int64_t) { return {kWideRows, kWideColumns}; }
#else
const int64_t kWideRows = knob("CNNLAB_TILE_ROWS", 6), kWideColumns = knob("CNNLAB_TILE_COLUMNS", 64);
Blocking blocking(int64_t n) { return n >= 48 ? Blocking{kWideRows, kWideColumns} : Blocking{kMR, 32}; }
#endif

// How one k step multiplies: float32 one k at a time, bfloat16 a pair.
template <typename T>
struct Lanes;

// One register of float32 sums per instruction set (AVX2: 8 columns, a "vector" of 16 columns is
// two of them; AVX-512: 16), and what the tiles do with it; `left` counts the valid columns.
#if defined(CNNLAB_TILES_AVX2)
using Accumulator = __m256;
constexpr int kLanes = 8;
inline __m256 zero() { return _mm256_setzero_ps(); }
inline __m256 load_all(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 broadcast_value(float value) { return _mm256_set1_ps(value); }
inline __m256 multiply_add_lanes(__m256 acc, __m256 a, __m256 b) { return _mm256_fmadd_ps(a, b, acc); }
inline __m256 add_lanes(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
// The first `left` lanes (left ≥ 8: all), as maskload/maskstore take them.
inline __m256i first_lanes(int64_t left) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(std::min<int64_t>(left, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256 load_first(const float* p, int64_t left) {
  return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_lanes(left));
}
inline void store_first(float* p, int64_t left, __m256 value) {
  if (left >= 8) return _mm256_storeu_ps(p, value);
  _mm256_maskstore_ps(p, first_lanes(left), value);
}
#else
using Accumulator = __m512;
constexpr int kLanes = 16;
inline __m512 zero() { return _mm512_setzero_ps(); }
inline __m512 load_all(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 broadcast_value(float value) { return _mm512_set1_ps(value); }
inline __m512 multiply_add_lanes(__m512 acc, __m512 a, __m512 b) { return _mm512_fmadd_ps(a, b, acc); }
inline __m512 add_lanes(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
// The first `left` lanes (left ≥ 16: all).
inline __mmask16 first_lanes(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }
inline __m512 load_first(const float* p, int64_t left) { return _mm512_maskz_loadu_ps(first_lanes(left), p); }
inline void store_first(float* p, int64_t left, __m512 value) { _mm512_mask_storeu_ps(p, first_lanes(left), value); }
#endif

// out[0, left) += value
inline void add_into(float* out, int64_t left, Accumulator value) {
  store_first(out, left, add_lanes(load_first(out, left), value));
}

template <>
struct Lanes<float> {
  static constexpr int kStep = 1;
  using Vector = Accumulator;
  static Vector load(const float* p) { return load_all(p); }
  // by value: _mm256_broadcast_ss(p) made GCC store every accumulator on each k step
  static Vector broadcast(const float* p) { return broadcast_value(*p); }
  static Accumulator multiply_add(Accumulator acc, Vector a, Vector b) { return multiply_add_lanes(acc, a, b); }
  static void store(float* out, int64_t left, Accumulator value) { store_first(out, left, value); }
};

#if !defined(CNNLAB_TILES_AVX2)
template <>
struct Lanes<bits> {
  static constexpr int kStep = 2;
  using Vector = __m512bh;
  static Vector load(const bits* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static Vector broadcast(const bits* p) {
    int32_t pair;
    std::memcpy(&pair, p, sizeof(pair));
    return (__m512bh)_mm512_set1_epi32(pair);
  }
  static Vector broadcast_last(const bits* p) { return (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(*p)); }
  static __m512 multiply_add(__m512 acc, Vector a, Vector b) { return _mm512_dpbf16_ps(acc, a, b); }
  static void store(bits* out, int64_t left, __m512 value) {
    _mm256_mask_storeu_epi16(out, first_lanes(left), (__m256i)_mm512_cvtneps_pbh(value));
  }
};
#endif

// Offset of column n in a packed B row.
template <typename T>
int64_t column(int64_t n) {
  return n * Lanes<T>::kStep;
}

enum class Epilogue { kStore, kAddFloat };

// One tile. A is given per term either as kMR row pointers (`Strided` false: row m's K values
// contiguous at a[t·kMR + m]) or as one pointer with a stride (`Strided` true: row m of k step s at
// a[t] + s·lda + m·step, i.e. the tile's rows side by side in memory, as a gradient's channels
// are); b: one pointer per term to packed B (ldb values per pair of k); c: MR row pointers (T* for
// kStore, float* for kAddFloat); columns: valid columns (≤ 16·NV).
template <typename T, int MR, int NV, bool Strided>
void tile(int64_t terms, const T* const* a, int64_t lda, const T* const* b, int64_t K, int64_t ldb, void* const* c,
          int64_t columns, Epilogue epilogue) {
  using L = Lanes<T>;
  constexpr int step = L::kStep;
  const int64_t ldk = ldb * step / 2;  // values between consecutive k steps of B
  constexpr int NR = NV * 16 / kLanes;  // registers per row of the tile (16 columns per vector)
  Accumulator acc[MR][NR];
  for (int m = 0; m < MR; ++m) {
    for (int v = 0; v < NR; ++v) acc[m][v] = zero();
  }
  const int64_t steps = K / step;
  for (int64_t t = 0; t < terms; ++t) {
    const T* const* rows = a + t * kMR;
    const T* base = a[t];
    const T* bt = b[t];
    for (int64_t k = 0; k < steps; ++k) {
      typename L::Vector bv[NR];
      for (int v = 0; v < NR; ++v) bv[v] = L::load(bt + k * ldk + kLanes * step * v);
      for (int m = 0; m < MR; ++m) {
        const auto av = L::broadcast(Strided ? base + k * lda + m * step : rows[m] + step * k);
        for (int v = 0; v < NR; ++v) acc[m][v] = L::multiply_add(acc[m][v], av, bv[v]);
      }
    }
    if constexpr (step == 2 && !Strided) {  // (strided A is packed in whole pairs: K even)
      if (K & 1) {  // the last k alone: its pair's second half is zero in A (and in packed B)
        typename L::Vector bv[NR];
        for (int v = 0; v < NR; ++v) bv[v] = L::load(bt + steps * ldk + kLanes * step * v);
        for (int m = 0; m < MR; ++m) {
          const auto av = L::broadcast_last(rows[m] + K - 1);
          for (int v = 0; v < NR; ++v) acc[m][v] = L::multiply_add(acc[m][v], av, bv[v]);
        }
      }
    }
  }
  // unrolled, with no early exit, so that every index is a constant and acc stays in registers (AVX2's
  // 16 registers: a loop that may leave early made GCC store the accumulators on every k step)
#pragma GCC unroll 8
  for (int v = 0; v < NR; ++v) {
    const int64_t left = columns - kLanes * v;
    if (left <= 0) continue;
#pragma GCC unroll 12
    for (int m = 0; m < MR; ++m) {
      if (epilogue == Epilogue::kStore) {
        L::store(static_cast<T*>(c[m]) + kLanes * v, left, acc[m][v]);
      } else {
        add_into(static_cast<float*>(c[m]) + kLanes * v, left, acc[m][v]);
      }
    }
  }
}

template <typename T>
using TileFn = void (*)(int64_t, const T* const*, int64_t, const T* const*, int64_t, int64_t, void* const*, int64_t,
                        Epilogue);

template <typename T, int NV, bool Strided, int... MR>
constexpr std::array<TileFn<T>, sizeof...(MR)> tiles(std::integer_sequence<int, MR...>) {
  return {&tile<T, MR + 1, NV, Strided>...};
}

template <typename T, bool Strided>
const TileFn<T>* tile_table(int64_t vectors) {
#if defined(CNNLAB_TILES_AVX2)  // one vector of 16 columns (two ymm registers) per tile
  static constexpr auto one = tiles<T, 1, Strided>(std::make_integer_sequence<int, kMR>{});
  TORCH_CHECK(vectors == 1, "cnnlab_native: AVX2 tiles are 16 columns wide");
  return one.data();
#else
  static constexpr auto one = tiles<T, 1, Strided>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto two = tiles<T, 2, Strided>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto three = tiles<T, 3, Strided>(std::make_integer_sequence<int, 8>{});
  static constexpr auto four = tiles<T, 4, Strided>(std::make_integer_sequence<int, 6>{});
  const TileFn<T>* table[] = {one.data(), two.data(), three.data(), four.data()};
  return table[vectors - 1];
#endif
}

// C[mr × columns] (mr ≤ kMR rows, ≤ 32 columns; mr ≤ 6 rows, ≤ 64 columns) from `terms` products;
// A as kMR row pointers per term (lda = 0) or one strided pointer per term (lda > 0, see `tile`).
template <typename T>
void multiply(int64_t mr, int64_t terms, const T* const* a, int64_t lda, const T* const* b, int64_t K, int64_t ldb,
              void* const* c, int64_t columns, Epilogue epilogue) {
  const int64_t vectors = (columns + 15) / 16;
  const TileFn<T> kernel = (lda ? tile_table<T, true>(vectors) : tile_table<T, false>(vectors))[mr - 1];
  kernel(terms, a, lda, b, K, ldb, c, columns, epilogue);
}

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Two rows of B (count values each) as one packed pair row of 2·round_up(count, 16) values, zeros in
// the padding: float32 one row after the other (bfloat16: interleaved, pair_rows below).
void pair_rows(const float* first, const float* second, int64_t count, float* dst) {
  const int64_t padded = round_up(count, 16);
  for (const float* row : {first, second}) {
    std::memcpy(dst, row, count * sizeof(float));
    std::memset(dst + count, 0, (padded - count) * sizeof(float));
    dst += padded;
  }
}
using tiles::pair_rows;  // the bfloat16 one, declared in correlate_tiles.h (AVX-512 build)


// The values of a contiguous float32 or bfloat16 tensor.
template <typename T>
T* values(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, float>) {
    return const_cast<float*>(t.const_data_ptr<float>());
  } else {
    return reinterpret_cast<T*>(const_cast<at::BFloat16*>(t.const_data_ptr<at::BFloat16>()));
  }
}

// The filters as B, one packed block per group and tap: for the forward (transposed = false)
// B[k = c][n = o] = W[o, c, i, j], K1 = C/G rows; for the input gradient (transposed = true)
// B[k = o][n = c], K1 = O/G rows, the taps of a kernel row stored right to left (slot kw − 1 − j).
// Where K1 is even, a kernel row's blocks follow each other as one block of kw·K1 rows (the merged
// terms of `gather`). Sets K1 and ldb (values per pair of rows).
template <typename T>
std::vector<T> pack_filters(const at::Tensor& weight, int64_t groups, bool transposed, int64_t& K1, int64_t& ldb) {
  const int64_t O = weight.size(0), Cg = weight.size(1), kh = weight.size(2), kw = weight.size(3), Og = O / groups;
  K1 = transposed ? Og : Cg;
  const int64_t N = transposed ? Cg : Og, pairs = (K1 + 1) / 2, taps = groups * kh * kw;
  ldb = 2 * round_up(N, 16);
  // [G][kh][kw][K1][N] (one strided copy by torch), then rows 2p and 2p + 1 made pair p
  const at::Tensor grouped = weight.view({groups, Og, Cg, kh, kw});
  at::Tensor rows = transposed ? grouped.permute({0, 3, 4, 1, 2}).flip(2) : grouped.permute({0, 3, 4, 2, 1});
  rows = rows.contiguous();
  const T* rp = values<T>(rows);
  std::vector<T> packed(taps * pairs * ldb);
  const std::vector<T> zeros(N, T(0));
  at::parallel_for(0, taps * pairs, 16, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      const int64_t tap = index / pairs, p = index % pairs;
      const T* first = rp + (tap * K1 + 2 * p) * N;
      pair_rows(first, 2 * p + 1 < K1 ? first + N : zeros.data(), N, packed.data() + index * ldb);
    }
  });
  return packed;
}

// One gathered product, the shape of both the forward and the input gradient: every pixel of the
// destination image (N, DH, DW, DC) is Σ_taps (source pixel of the tap) · B_tap, the source image
// being (N, SH, SW, SC); tap (i, j) of destination pixel (dh, dw) reads source pixel
// (rows[i·DH + dh], cols[j·DW + dw]), or nothing where either is −1.
template <typename T>
struct Gather {
  const T* src;
  int64_t SH, SW, SC;
  T* dst;
  int64_t N, DH, DW, DC;
  int64_t groups, K1, Ng, kh, kw;  // K1 source and Ng destination channels per group
  std::vector<int64_t> rows, cols;
  bool mergeable;  // a kernel row's kw taps read kw neighbouring source pixels (from the one at j = 0 of the slots)
  int64_t first_slot_tap;  // the tap j stored in slot 0 of a kernel row (0, or kw − 1 for the input gradient)
  const T* packed;
  int64_t ldb;
};

// Runs a Gather. Destination pixels are grouped by which taps reach them (a mask over kernel rows
// times a mask over kernel columns): within a group every tap reaches every pixel or none, so a
// tile's products have no zero rows (padding costs nothing) and border pixels never slow the
// interior. Where every kernel column reaches a group's pixels and the taps allow, a kernel row
// is one term of kw·K1 rows (a contiguous span of kw source pixels), else one term per tap.
template <typename T>
void gather(const Gather<T>& P) {
  TORCH_CHECK(P.kh <= 64 && P.kw <= 64, "cnnlab_native: kernels up to 64 taps wide");
  struct Class {
    uint64_t mask;
    std::vector<int64_t> members;  // rows (or columns) with this mask
  };
  const auto classify = [](const std::vector<int64_t>& table, int64_t taps, int64_t size) {
    std::vector<Class> classes;
    for (int64_t x = 0; x < size; ++x) {
      uint64_t mask = 0;
      for (int64_t t = 0; t < taps; ++t) mask |= uint64_t(table[t * size + x] >= 0) << t;
      auto found = std::find_if(classes.begin(), classes.end(), [&](const Class& c) { return c.mask == mask; });
      if (found == classes.end()) {
        classes.push_back({mask, {}});
        found = classes.end() - 1;
      }
      found->members.push_back(x);
    }
    return classes;
  };
  const std::vector<Class> row_classes = classify(P.rows, P.kh, P.DH), col_classes = classify(P.cols, P.kw, P.DW);
  const Blocking shape = blocking(P.Ng);
  struct Tile {
    const Class *row, *col;
    int64_t start, count;  // pixels [start, start + count) of the group, ordered (n, row member, col member)
  };
  std::vector<Tile> tiles;
  for (const Class& r : row_classes) {
    for (const Class& c : col_classes) {
      if (r.mask == 0 || c.mask == 0) continue;  // no tap reaches these pixels: zeroed below
      const int64_t pixels = P.N * int64_t(r.members.size() * c.members.size());
      for (int64_t start = 0; start < pixels; start += shape.rows) {
        tiles.push_back({&r, &c, start, std::min(shape.rows, pixels - start)});
      }
    }
  }
  const int64_t full_cols = P.kw == 64 ? ~uint64_t(0) : (uint64_t(1) << P.kw) - 1;
  const int64_t pairs = (P.K1 + 1) / 2, tap_size = pairs * P.ldb;
  const bool merge = P.mergeable && P.kw > 1 && P.K1 % 2 == 0;
  // zero the destination pixels no tap reaches (stride > kernel leaves some in the input gradient)
  for (const Class& r : row_classes) {
    for (const Class& c : col_classes) {
      if (r.mask != 0 && c.mask != 0) continue;
      for (int64_t n = 0; n < P.N; ++n) {
        for (const int64_t dh : r.members) {
          for (const int64_t dw : c.members) std::fill_n(P.dst + ((n * P.DH + dh) * P.DW + dw) * P.DC, P.DC, T(0));
        }
      }
    }
  }
  const int64_t max_terms = P.kh * P.kw;
  // the image and destination pixel of each of a tile's rows: one division, then counting
  const auto locate = [](const Tile& tile, int64_t* n, int64_t* dh, int64_t* dw) {
    const int64_t height = tile.row->members.size(), width = tile.col->members.size();
    int64_t image = tile.start / (height * width), r = tile.start / width % height, c = tile.start % width;
    for (int64_t m = 0; m < tile.count; ++m) {
      n[m] = image, dh[m] = tile.row->members[r], dw[m] = tile.col->members[c];
      if (++c == width) {
        c = 0;
        if (++r == height) r = 0, ++image;
      }
    }
  };
  at::parallel_for(0, (int64_t(tiles.size()) + kChunk - 1) / kChunk, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> a(kChunk * max_terms * kMR), b(kChunk * max_terms), b_block(max_terms);
    int64_t terms[kChunk], K[kChunk], n_of[kChunk][kMR], dh_of[kChunk][kMR], dw_of[kChunk][kMR];
    void* c[kMR];
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t first = chunk * kChunk, count = std::min<int64_t>(kChunk, tiles.size() - first);
      for (int64_t grp = 0; grp < P.groups; ++grp) {
        for (int64_t u = 0; u < count; ++u) {  // each tile's terms: the source rows they read, the filters
          const Tile& tile = tiles[first + u];
          locate(tile, n_of[u], dh_of[u], dw_of[u]);
          const bool merged = merge && tile.col->mask == full_cols;
          K[u] = merged ? P.kw * P.K1 : P.K1;
          terms[u] = 0;
          const T** rows = a.data() + u * max_terms * kMR;
          for (int64_t i = 0; i < P.kh; ++i) {
            if (!(tile.row->mask >> i & 1)) continue;
            for (int64_t j = 0; j < P.kw; ++j) {
              if (merged ? j != P.first_slot_tap : !(tile.col->mask >> j & 1)) continue;
              for (int64_t m = 0; m < tile.count; ++m) {
                const int64_t sh = P.rows[i * P.DH + dh_of[u][m]], sw = P.cols[j * P.DW + dw_of[u][m]];
                rows[terms[u] * kMR + m] = P.src + ((n_of[u][m] * P.SH + sh) * P.SW + sw) * P.SC + grp * P.K1;
              }
              const int64_t slot = P.first_slot_tap == 0 ? j : P.kw - 1 - j;
              b[u * max_terms + terms[u]++] = P.packed + ((grp * P.kh + i) * P.kw + slot) * tap_size;
            }
          }
        }
        // filter blocks outer, tiles inner: one block's filters stay in L2 for the chunk
        for (int64_t n0 = 0; n0 < P.Ng; n0 += shape.columns) {
          for (int64_t u = 0; u < count; ++u) {
            const Tile& tile = tiles[first + u];
            for (int64_t m = 0; m < tile.count; ++m) {
              c[m] = P.dst + ((n_of[u][m] * P.DH + dh_of[u][m]) * P.DW + dw_of[u][m]) * P.DC + grp * P.Ng + n0;
            }
            for (int64_t t = 0; t < terms[u]; ++t) b_block[t] = b[u * max_terms + t] + column<T>(n0);
            multiply(tile.count, terms[u], a.data() + u * max_terms * kMR, 0, b_block.data(), K[u], P.ldb, c,
                     std::min(shape.columns, P.Ng - n0), Epilogue::kStore);
          }
        }
      }
    }
  });
}

// Y (N, OH, OW, O) = correlation of X (N, H, W, C) with W (O, C/G, kh, kw): tap (i, j) of output
// pixel (oh, ow) reads input pixel (oh·sh − ph + i·dh, ow·sw − pw + j·dw).
template <typename T>
at::Tensor forward_as(const at::Tensor& input, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                      int64_t OH, int64_t OW) {
  const at::Tensor x = input.contiguous();
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), O = weight.size(0);
  at::Tensor out = at::empty({N, OH, OW, O}, x.options());
  int64_t K1, ldb;
  const std::vector<T> packed = pack_filters<T>(weight, groups, false, K1, ldb);
  Gather<T> P{values<T>(x), H, W, C, values<T>(out), N, OH, OW, O, groups, K1, O / groups, g.kh, g.kw,
              forward_taps(g.kh, OH, H, g.sh, g.ph, g.dh), forward_taps(g.kw, OW, W, g.sw, g.pw, g.dw),
              groups == 1 && g.dw == 1, 0, packed.data(), ldb};
  gather(P);
  return out;
}

// ∂X (N, H, W, C) from ∂Y (N, OH, OW, O): tap (i, j) of input pixel (ih, iw) receives from output
// pixel ((ih + ph − i·dh)/sh, (iw + pw − j·dw)/sw) where both quotients are whole and in range;
// the filters transposed. With stride 1 along W a kernel row's taps read neighbouring output
// pixels right to left, so the span starts at tap kw − 1.
template <typename T>
at::Tensor input_grad_as(const at::Tensor& grad, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                         int64_t H, int64_t W) {
  const at::Tensor dy = grad.contiguous();
  const int64_t N = dy.size(0), OH = dy.size(1), OW = dy.size(2), O = dy.size(3);
  const int64_t C = weight.size(1) * groups;
  at::Tensor out = at::empty({N, H, W, C}, dy.options());
  int64_t K1, ldb;
  const std::vector<T> packed = pack_filters<T>(weight, groups, true, K1, ldb);
  Gather<T> P{values<T>(dy), OH, OW, O, values<T>(out), N, H, W, C, groups, K1, C / groups, g.kh, g.kw,
              input_grad_taps(g.kh, H, OH, g.sh, g.ph, g.dh), input_grad_taps(g.kw, W, OW, g.sw, g.pw, g.dw),
              groups == 1 && g.dw == 1 && g.sw == 1, g.kw - 1, packed.data(), ldb};
  gather(P);
  return out;
}

// ∂W (O, C/G, kh, kw) = Σ_positions ∂Yᵀ[O × P] · X_tap[P × C], per tap, over blocks of P = kPositions
// output pixels of the batch. A = ∂Yᵀ is read in place as a strided A (its rows, the output
// channels, side by side; float32 needs no copy, bfloat16 interleaves pairs of positions once per
// block); each tap's input pixels are packed as B in pairs of positions. Each task adds into its
// own float32 accumulator, summed at the end (long blocks: the accumulator is read and written once
// per block).
// Thin inputs (fewer than kGatherBelow channels per group: an RGB stem, the 32-channel layers)
// gather every tap's pixels side by side into one B row per position instead: one product of
// kh·kw·C/G columns per block, where a product per tap fills 3 of a vector's 16 columns for an RGB
// input and packs each tap separately. 3×3 @32², batch 128 float32 (256 bfloat16), ms per tap
// against gathered (torch's oneDNN): 3→24 3.9 → 1.7 (0.7), 32→32 9.3 → 8.1 (5.5–6.0), 3→24
// bfloat16 6.6 → 3.9 (1.0–2.2); at 64 channels and up no difference in float32, and bfloat16's
// scalar interleaving loses from 16 channels up (16→32: 9.1 per tap, 10.7 gathered).
// The accumulator holds `products` products of `span` taps each:
// [G][products][Og][round_up(span·C/G, 16)], tap = product·span + slot.
template <typename T>
constexpr int64_t kGatherBelow = std::is_same_v<T, float> ? 64 : 16;

template <typename T>
at::Tensor weight_grad_as(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                          const Geometry2d& g, int64_t groups) {
  const at::Tensor x = input.contiguous(), dy = grad.contiguous();
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t OH = dy.size(1), OW = dy.size(2), O = dy.size(3), Cg = C / groups, Og = O / groups;
  const int64_t taps = g.kh * g.kw, span = Cg < kGatherBelow<T> ? taps : 1, products = taps / span;
  const int64_t width = span * Cg, WP = round_up(width, 16), OP = round_up(Og, 16);
  const Blocking shape = blocking(width);
  const int64_t pixels = N * OH * OW, blocks = (pixels + kPositions - 1) / kPositions;
  const int64_t per_task = groups * products * Og * WP;
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), blocks), 1);
  at::Tensor partial = at::zeros({tasks, per_task}, x.options().dtype(at::kFloat));
  const T* xp = values<T>(x);
  const T* gp = values<T>(dy);
  float* pp = partial.data_ptr<float>();
  constexpr bool pairs = Lanes<T>::kStep == 2;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dyp(pairs ? kPositions * OP : 0);  // bfloat16: [K/2][OP][2], positions 2k, 2k + 1 per word
    std::vector<T> xb(kPositions * WP);               // [K/2][WP][2]: one product's input pixels (columns
                                                      // past span·Cg stay zero: pair_rows and the gather skip them)
    // the image and output pixel of each position (n_of[K] = 0 etc.: the odd block's missing partner)
    std::vector<int64_t> n_of(kPositions + 1, 0), oh_of(kPositions + 1, 0), ow_of(kPositions + 1, 0);
    const std::vector<T> zeros(std::max(WP, OP), T(0));
    void* c[kMR];
    for (int64_t t = begin; t < end; ++t) {
      float* acc = pp + t * per_task;
      for (int64_t block = blocks * t / tasks; block < blocks * (t + 1) / tasks; ++block) {
        const int64_t p0 = block * kPositions, K = std::min(kPositions, pixels - p0);
        for (int64_t k = 0; k < K; ++k) {  // each position's image and output pixel, computed once per block
          const int64_t q = p0 + k;
          n_of[k] = q / (OH * OW), oh_of[k] = q / OW % OH, ow_of[k] = q % OW;
        }
        for (int64_t grp = 0; grp < groups; ++grp) {
          const T* dy_block = gp + p0 * O + grp * Og;
          if constexpr (pairs) {
            for (int64_t k = 0; k < K; k += 2) {
              pair_rows(dy_block + k * O, k + 1 < K ? dy_block + (k + 1) * O : zeros.data(), Og, dyp.data() + k * OP);
            }
          }
          const T* a_base = pairs ? dyp.data() : dy_block;
          const int64_t lda = pairs ? 2 * OP : O, K_even = pairs ? round_up(K, 2) : K;
          for (int64_t product = 0; product < products; ++product) {
            bool any = span > 1;
            if (span > 1) {  // every tap of each position written straight into its place in B
              // float32: row k of WP values; bfloat16: pair k / 2, value k % 2 of each column's pair
              const int64_t rows = pairs ? round_up(K, 2) : K, step = pairs ? 2 : 1;
              const bool spans = g.dw == 1 && Cg == C;  // a kernel row's taps: kw·C neighbouring values
              for (int64_t k = 0; k < rows; ++k) {
                T* dst = pairs ? xb.data() + (k / 2) * 2 * WP + (k & 1) : xb.data() + k * WP;
                const int64_t iw0 = ow_of[k] * g.sw - g.pw;
                const bool row_inside = spans && iw0 >= 0 && iw0 + g.kw <= W;
                for (int64_t i = 0; i < g.kh; ++i, dst += step * g.kw * Cg) {
                  const int64_t ih = oh_of[k] * g.sh - g.ph + i * g.dh;
                  if (k >= K || ih < 0 || ih >= H) {
                    for (int64_t c = 0; c < g.kw * Cg; ++c) dst[c * step] = T(0);
                    continue;
                  }
                  const T* row = xp + (n_of[k] * H + ih) * W * C + grp * Cg;
                  if (row_inside) {
                    for (int64_t c = 0; c < g.kw * C; ++c) dst[c * step] = row[iw0 * C + c];
                    continue;
                  }
                  for (int64_t j = 0; j < g.kw; ++j) {
                    const int64_t iw = iw0 + j * g.dw;
                    const bool inside = iw >= 0 && iw < W;
                    for (int64_t c = 0; c < Cg; ++c) dst[(j * Cg + c) * step] = inside ? row[iw * C + c] : T(0);
                  }
                }
              }
            }
            for (int64_t k = 0; span == 1 && k < K; k += 2) {  // positions k and k + 1 → [WP][2] pairs
              const T* src[2];
              for (int64_t e = 0; e < 2; ++e) {
                const int64_t i = product / g.kw, j = product % g.kw;
                const int64_t ih = oh_of[k + e] * g.sh - g.ph + i * g.dh, iw = ow_of[k + e] * g.sw - g.pw + j * g.dw;
                const bool inside = k + e < K && ih >= 0 && ih < H && iw >= 0 && iw < W;
                src[e] = inside ? xp + ((n_of[k + e] * H + ih) * W + iw) * C + grp * Cg : zeros.data();
                any |= inside;
              }
              pair_rows(src[0], src[1], width, xb.data() + k * WP);
            }
            if (!any) continue;
            float* dw = acc + (grp * products + product) * Og * WP;
            for (int64_t o0 = 0; o0 < Og; o0 += shape.rows) {
              const int64_t mr = std::min(shape.rows, Og - o0);
              const T* a = a_base + column<T>(o0);
              for (int64_t c0 = 0; c0 < width; c0 += shape.columns) {
                for (int64_t m = 0; m < mr; ++m) c[m] = dw + (o0 + m) * WP + c0;
                const T* b_tap = xb.data() + column<T>(c0);
                multiply(mr, 1, &a, lda, &b_tap, K_even, 2 * WP, c, std::min(shape.columns, width - c0),
                         Epilogue::kAddFloat);
              }
            }
          }
        }
      }
    }
  });
  // [G][products][Og][span·Cg] → (O, Cg, kh, kw), with tap = product·span + slot
  return partial.sum(0)
      .view({groups, products, Og, WP})
      .narrow(3, 0, width)
      .view({groups, products, Og, span, Cg})
      .permute({0, 2, 4, 1, 3})
      .reshape(weight_shape)
      .to(input.scalar_type())
      .contiguous();
}

}  // namespace

#if defined(CNNLAB_TILES_AVX2)
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                   int64_t OH, int64_t OW) {
  return forward_as<float>(input, weight, g, groups, OH, OW);
}

at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                      int64_t H, int64_t W) {
  return input_grad_as<float>(grad, weight, g, groups, H, W);
}

at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                       const Geometry2d& g, int64_t groups) {
  return weight_grad_as<float>(input, grad, weight_shape, g, groups);
}

}  // namespace CNNLAB_TILES_ISA
#else
}  // namespace CNNLAB_TILES_ISA

// Declared in correlate_tiles.h: two rows interleaved into pairs (bfloat16).
void pair_rows(const uint16_t* first, const uint16_t* second, int64_t count, uint16_t* dst) {
  const __m512i low = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                                       37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
  for (int64_t c = 0; c < count; c += 32) {
    const int64_t left = std::min<int64_t>(32, count - c);
    const __mmask32 mask = left >= 32 ? __mmask32(0xFFFFFFFF) : __mmask32((1u << left) - 1);
    const __m512i a = _mm512_maskz_loadu_epi16(mask, first + c), b = _mm512_maskz_loadu_epi16(mask, second + c);
    _mm512_storeu_si512(dst + 2 * c, _mm512_permutex2var_epi16(a, low, b));
    if (left > 16) _mm512_storeu_si512(dst + 2 * c + 32, _mm512_permutex2var_epi16(a, high, b));
  }
}

namespace avx512 {

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                   int64_t OH, int64_t OW) {
  return input.scalar_type() == at::kFloat ? forward_as<float>(input, weight, g, groups, OH, OW)
                                           : forward_as<bits>(input, weight, g, groups, OH, OW);
}

at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                      int64_t H, int64_t W) {
  return grad.scalar_type() == at::kFloat ? input_grad_as<float>(grad, weight, g, groups, H, W)
                                          : input_grad_as<bits>(grad, weight, g, groups, H, W);
}

at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                       const Geometry2d& g, int64_t groups) {
  return input.scalar_type() == at::kFloat ? weight_grad_as<float>(input, grad, weight_shape, g, groups)
                                           : weight_grad_as<bits>(input, grad, weight_shape, g, groups);
}

}  // namespace avx512
#endif

}  // namespace tiles
}  // namespace cnnlab

#else  // x86-64 only: elsewhere the float32 products run on brgemm, bfloat16 on the Python algorithms

namespace cnnlab {
namespace tiles {
namespace CNNLAB_TILES_ISA {

at::Tensor forward(const at::Tensor&, const at::Tensor&, const Geometry2d&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: the tile kernels need an x86-64 CPU with AVX512-BF16");
}
at::Tensor input_grad(const at::Tensor&, const at::Tensor&, const Geometry2d&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: the tile kernels need an x86-64 CPU with AVX512-BF16");
}
at::Tensor weight_grad(const at::Tensor&, const at::Tensor&, at::IntArrayRef, const Geometry2d&, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: the tile kernels need an x86-64 CPU with AVX512-BF16");
}

}  // namespace CNNLAB_TILES_ISA
}  // namespace tiles
}  // namespace cnnlab

#endif
