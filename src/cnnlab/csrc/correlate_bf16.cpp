// Direct convolution of bfloat16 data, channels-last (NHWC), 2-D: forward, input gradient and weight
// gradient on cnnlab's own AVX512-BF16 microkernel (float32 accumulators, vdpbf16ps). Compiled for
// every AVX-512 build; run only where the CPU has AVX512-BF16 (`bf16_supported`).
//
// The microkernel computes an MR × (16·NV) tile of C = Σ_terms A_term · B_term with the
// accumulators in registers across every term (kernel tap) and the whole inner dimension K:
//     C[m][n] = Σ_t Σ_k A_t[m][k] · B_t[k][n]
// Each row m of A_t is its own pointer (K contiguous bfloat16 values; a shared zero row stands for
// padding), so one kernel serves all three products without column matrices:
// - forward: rows are output pixels, A_t[m] the input pixel tap t reads, B_t the tap's filters
//   [C × O]; the tile is converted to bfloat16 and stored;
// - input gradient: rows are input pixels of one residue class modulo the stride, A_t[m] the
//   output-gradient pixel that reaches them through tap t, B_t the tap's filters transposed;
// - weight gradient: rows are output channels, K runs over output positions (the gradient
//   transposed, [O × positions]), B the tap's input pixels; the tile is added to a float32
//   accumulator.
// B is packed in pairs along K (VNNI: [K/2][N][2], N padded to 16), as vdpbf16ps multiplies two
// bfloat16 pairs into one float32 lane: C[m][n] += A[m][2k]·B[2k][n] + A[m][2k+1]·B[2k+1][n].

#include "correlate_bf16.h"

#if defined(__x86_64__)

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>
#include <cstring>
#include <vector>

namespace cnnlab {
namespace bf16 {

#define CNNLAB_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

bool supported() { return __builtin_cpu_supports("avx512bf16"); }

using bits = uint16_t;  // bfloat16 as stored

constexpr int kMR = 12;               // most rows per tile (the row pointers are laid out kMR per term)
constexpr int64_t kPositions = 256;   // output pixels per weight-gradient block (K of its products; even)
constexpr int64_t kChunk = 16;        // tiles that share each block of filters while it sits in L2

// Tile shape for products with n columns: 6 rows × 64 columns (24 accumulators; each pair of k
// loads 4 B vectors and 6 broadcasts for 24 vdpbf16ps) where n allows, else 12 × 32 (12 row
// pointers and 2 B vectors for 24).
struct Blocking {
  int64_t rows, columns;
};
Blocking blocking(int64_t n) { return n >= 48 ? Blocking{6, 64} : Blocking{kMR, 32}; }

enum class Epilogue { kStoreBF16, kAddFloat };

// One tile. a: terms × kMR row pointers (the first MR used); b: one pointer per term to packed
// [ceil(K/2)][ldb/2][2]; c: MR row pointers (bits* for kStoreBF16, float* for kAddFloat);
// columns: valid columns (≤ 16·NV).
template <int MR, int NV>
CNNLAB_BF16_TARGET void tile(int64_t terms, const bits* const* a, const bits* const* b, int64_t K, int64_t ldb,
                             void* const* c, int64_t columns, Epilogue epilogue) {
  __m512 acc[MR][NV];
  for (int m = 0; m < MR; ++m) {
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_ps();
  }
  const int64_t pairs = K / 2;
  for (int64_t t = 0; t < terms; ++t) {
    const bits* const* rows = a + t * kMR;
    const bits* bt = b[t];
    for (int64_t p = 0; p < pairs; ++p) {
      __m512bh bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(bt + p * ldb + 32 * v);
      for (int m = 0; m < MR; ++m) {
        int32_t pair;
        std::memcpy(&pair, rows[m] + 2 * p, sizeof(pair));
        const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
        for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], av, bv[v]);
      }
    }
    if (K & 1) {  // the last k alone: its pair's second half is zero in A (and in packed B)
      __m512bh bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(bt + pairs * ldb + 32 * v);
      for (int m = 0; m < MR; ++m) {
        const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(rows[m][K - 1]));
        for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], av, bv[v]);
      }
    }
  }
  for (int v = 0; v < NV; ++v) {
    const int64_t left = columns - 16 * v;
    if (left <= 0) break;
    const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    for (int m = 0; m < MR; ++m) {
      if (epilogue == Epilogue::kStoreBF16) {
        bits* out = static_cast<bits*>(c[m]) + 16 * v;
        _mm256_mask_storeu_epi16(out, mask, (__m256i)_mm512_cvtneps_pbh(acc[m][v]));
      } else {
        float* out = static_cast<float*>(c[m]) + 16 * v;
        _mm512_mask_storeu_ps(out, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), acc[m][v]));
      }
    }
  }
}

using TileFn = void (*)(int64_t, const bits* const*, const bits* const*, int64_t, int64_t, void* const*, int64_t,
                        Epilogue);

template <int NV, int... MR>
constexpr std::array<TileFn, sizeof...(MR)> tiles(std::integer_sequence<int, MR...>) {
  return {&tile<MR + 1, NV>...};
}

// C[mr × columns] (mr ≤ kMR rows, ≤ 32 columns; mr ≤ 6 rows, ≤ 64 columns) from `terms` products;
// a holds kMR row pointers per term.
void multiply(int64_t mr, int64_t terms, const bits* const* a, const bits* const* b, int64_t K, int64_t ldb,
              void* const* c, int64_t columns, Epilogue epilogue) {
  static constexpr auto one = tiles<1>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto two = tiles<2>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto three = tiles<3>(std::make_integer_sequence<int, 6>{});
  static constexpr auto four = tiles<4>(std::make_integer_sequence<int, 6>{});
  const TileFn* table[] = {one.data(), two.data(), three.data(), four.data()};
  table[(columns + 15) / 16 - 1][mr - 1](terms, a, b, K, ldb, c, columns, epilogue);
}

// dst[2c] = first[c], dst[2c + 1] = second[c] for c < count, zeros up to a multiple of 16 channels:
// two rows of B made one row of bfloat16 pairs.
CNNLAB_BF16_TARGET void interleave(const bits* first, const bits* second, int64_t count, bits* dst) {
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

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// B for the forward (transposed = false): per group and tap, [ceil(Cg/2)][Og padded to 16][2] with
// B[k = c][n = o] = W[o, c, i, j]; for the input gradient (transposed = true): [ceil(Og/2)][Cg padded][2]
// with B[k = o][n = c]. Zero in the padding. `merged`: one B per kernel row instead of per tap, the
// row's kw taps one after the other along K (k = j·Cg + c; for the input gradient, which reads the
// output gradient's pixels right to left, k = (kw − 1 − j)·Og + o). Returns K and the row length.
std::vector<bits> pack_filters(const at::Tensor& weight, int64_t groups, bool transposed, bool merged, int64_t& K,
                               int64_t& ldb) {
  const int64_t O = weight.size(0), Cg = weight.size(1), kh = weight.size(2), kw = weight.size(3), Og = O / groups;
  K = (merged ? kw : 1) * (transposed ? Og : Cg);
  const int64_t N = transposed ? Cg : Og, pairs = (K + 1) / 2, terms = groups * kh * (merged ? 1 : kw);
  ldb = 2 * round_up(N, 16);
  // [G][kh][kw][K][N] (one strided copy by torch), then rows 2p and 2p + 1 interleaved into pair p
  const at::Tensor grouped = weight.view({groups, Og, Cg, kh, kw});
  at::Tensor rows = transposed ? grouped.permute({0, 3, 4, 1, 2}) : grouped.permute({0, 3, 4, 2, 1});
  rows = (transposed && merged ? rows.flip(2) : rows).contiguous();
  const bits* rp = reinterpret_cast<const bits*>(rows.const_data_ptr<at::BFloat16>());
  std::vector<bits> packed(terms * pairs * ldb);
  const std::vector<bits> zeros(N, 0);
  at::parallel_for(0, terms * pairs, 16, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      const int64_t term = index / pairs, p = index % pairs;
      const bits* first = rp + (term * K + 2 * p) * N;
      interleave(first, 2 * p + 1 < K ? first + N : zeros.data(), N, packed.data() + index * ldb);
    }
  });
  return packed;
}

// `count` consecutive pixels of `width` values each, from pixel `start` of an image row of `size`
// pixels: the row itself where the span lies inside it, else a copy in `scratch` (advanced past it)
// with zeros for the pixels outside.
const bits* span(const bits* row, int64_t start, int64_t count, int64_t size, int64_t width, bits*& scratch) {
  if (start >= 0 && start + count <= size) return row + start * width;
  bits* copy = scratch;
  for (int64_t e = 0; e < count; ++e) {
    const int64_t pixel = start + e;
    if (pixel >= 0 && pixel < size) {
      std::memcpy(copy + e * width, row + pixel * width, width * sizeof(bits));
    } else {
      std::memset(copy + e * width, 0, width * sizeof(bits));
    }
  }
  scratch += count * width;
  return copy;
}

// Y (N, OH, OW, O) = correlation of X (N, H, W, C) with W (O, C/G, kh, kw). A tile is a few
// consecutive output pixels of the batch (across rows and images where they are short). Without
// groups and dilation along W, the kw pixels a kernel row reads are one contiguous span of kw·C
// values: one term per kernel row (K = kw·C), else one per tap (K = C/G).
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                   int64_t OH, int64_t OW) {
  const at::Tensor x = input.contiguous();
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), O = weight.size(0);
  const int64_t Cg = C / groups, Og = O / groups, pixels = N * OH * OW;
  const bool merged = groups == 1 && g.dw == 1 && g.kw > 1;
  int64_t K, ldb;
  const std::vector<bits> packed = pack_filters(weight, groups, false, merged, K, ldb);
  const int64_t term_size = ((K + 1) / 2) * ldb, taps = merged ? g.kh : g.kh * g.kw, span_w = merged ? g.kw : 1;
  at::Tensor out = at::empty({N, OH, OW, O}, x.options());
  const bits* xp = reinterpret_cast<const bits*>(x.const_data_ptr<at::BFloat16>());
  bits* yp = reinterpret_cast<bits*>(out.data_ptr<at::BFloat16>());
  const Blocking shape = blocking(Og);
  const int64_t tiles = (pixels + shape.rows - 1) / shape.rows;
  at::parallel_for(0, (tiles + kChunk - 1) / kChunk, 1, [&](int64_t begin, int64_t end) {
    const std::vector<bits> zeros(K + 2, 0);
    std::vector<bits> scratch(merged ? kChunk * taps * kMR * K : 0);  // spans that cross the image's edge
    std::vector<const bits*> a(kChunk * taps * kMR), b(kChunk * taps), b_block(taps);
    int64_t terms[kChunk];
    void* c[kMR];
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t first = chunk * kChunk, count = std::min(kChunk, tiles - first);
      for (int64_t grp = 0; grp < groups; ++grp) {
        bits* free = scratch.data();
        for (int64_t u = 0; u < count; ++u) {  // each tile's terms: the rows they read, the filters
          const int64_t p0 = (first + u) * shape.rows, mr = std::min(shape.rows, pixels - p0);
          const bits** rows = a.data() + u * taps * kMR;
          terms[u] = 0;
          for (int64_t t = 0; t < taps; ++t) {
            const int64_t i = merged ? t : t / g.kw, j = merged ? 0 : t % g.kw;
            bool any = false;
            for (int64_t m = 0; m < mr; ++m) {
              const int64_t n = (p0 + m) / (OH * OW), oh = (p0 + m) / OW % OH, ow = (p0 + m) % OW;
              const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
              const bool inside = ih >= 0 && ih < H && iw + (span_w - 1) >= 0 && iw < W;
              any |= inside;
              const bits* row = xp + (n * H + ih) * W * C + grp * Cg;
              rows[terms[u] * kMR + m] = !inside ? zeros.data() : span(row, iw, span_w, W, C, free);
            }
            if (any) b[u * taps + terms[u]++] = packed.data() + (grp * taps + t) * term_size;
          }
        }
        // filter blocks outer, tiles inner: one block's filters (all taps) stay in L2 for the chunk
        for (int64_t oc0 = 0; oc0 < Og; oc0 += shape.columns) {
          for (int64_t u = 0; u < count; ++u) {
            const int64_t p0 = (first + u) * shape.rows, mr = std::min(shape.rows, pixels - p0);
            for (int64_t m = 0; m < mr; ++m) c[m] = yp + (p0 + m) * O + grp * Og + oc0;
            for (int64_t t = 0; t < terms[u]; ++t) b_block[t] = b[u * taps + t] + 2 * oc0;
            multiply(mr, terms[u], a.data() + u * taps * kMR, b_block.data(), K, ldb, c,
                     std::min(shape.columns, Og - oc0), Epilogue::kStoreBF16);
          }
        }
      }
    }
  });
  return out;
}

// ∂X (N, H, W, C) from ∂Y (N, OH, OW, O): every input pixel gathers the output gradients that
// reached it, ∂X[ih, iw] = Σ_taps ∂Y[(ih + ph − i·dh)/sh, (iw + pw − j·dw)/sw] · W_tapᵀ over the
// taps whose quotients are whole and in range. Pixels are tiled within one residue class of
// (ih, iw) modulo the stride, where a tap's quotients are whole for every pixel of the tile or none.
// Without groups, stride or dilation along W, a kernel row's taps read kw neighbouring output
// pixels (right to left): one term per kernel row, as in the forward.
at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                      int64_t H, int64_t W) {
  const at::Tensor dy = grad.contiguous();
  const int64_t N = dy.size(0), OH = dy.size(1), OW = dy.size(2), O = dy.size(3);
  const int64_t Cg = weight.size(1), C = Cg * groups, Og = O / groups;
  const bool merged = groups == 1 && g.dw == 1 && g.sw == 1 && g.kw > 1;
  int64_t K, ldb;
  const std::vector<bits> packed = pack_filters(weight, groups, true, merged, K, ldb);
  const int64_t term_size = ((K + 1) / 2) * ldb, taps = merged ? g.kh : g.kh * g.kw, span_w = merged ? g.kw : 1;
  at::Tensor out = at::empty({N, H, W, C}, dy.options());
  const bits* gp = reinterpret_cast<const bits*>(dy.const_data_ptr<at::BFloat16>());
  bits* dxp = reinterpret_cast<bits*>(out.data_ptr<at::BFloat16>());
  // residue classes (rh, rw) of (ih, iw) modulo (sh, sw); a tile is a few consecutive pixels of one
  // class across the batch
  const int64_t classes_h = std::min(g.sh, H), classes_w = std::min(g.sw, W);
  const int64_t most = N * ((H + g.sh - 1) / g.sh) * ((W + g.sw - 1) / g.sw);
  const Blocking shape = blocking(Cg);
  const int64_t tiles_per_class = (most + shape.rows - 1) / shape.rows;
  at::parallel_for(0, classes_h * classes_w * tiles_per_class, 1, [&](int64_t begin, int64_t end) {
    const std::vector<bits> zeros(K + 2, 0);
    std::vector<bits> scratch(merged ? taps * kMR * K : 0);  // spans that cross the image's edge
    std::vector<const bits*> a(taps * kMR), b(taps), b_block(taps);
    void* c[kMR];
    int64_t ih_of[kMR], iw_of[kMR], n_of[kMR];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t cls = task / tiles_per_class, rh = cls / classes_w, rw = cls % classes_w;
      const int64_t cols = (W - rw + g.sw - 1) / g.sw, rows = (H - rh + g.sh - 1) / g.sh;
      const int64_t q0 = task % tiles_per_class * shape.rows, pixels = N * rows * cols;
      if (q0 >= pixels) continue;
      const int64_t mr = std::min(shape.rows, pixels - q0);
      for (int64_t m = 0; m < mr; ++m) {
        const int64_t q = q0 + m;
        n_of[m] = q / (rows * cols), ih_of[m] = rh + q / cols % rows * g.sh, iw_of[m] = rw + q % cols * g.sw;
      }
      for (int64_t grp = 0; grp < groups; ++grp) {
        bits* free = scratch.data();
        int64_t terms = 0;
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t i = merged ? t : t / g.kw, j = merged ? g.kw - 1 : t % g.kw;  // merged: from the leftmost pixel
          if (((rh + g.ph - i * g.dh) % g.sh + g.sh) % g.sh != 0) continue;
          if (((rw + g.pw - j * g.dw) % g.sw + g.sw) % g.sw != 0) continue;
          bool any = false;
          for (int64_t m = 0; m < mr; ++m) {
            const int64_t h = ih_of[m] + g.ph - i * g.dh, w = iw_of[m] + g.pw - j * g.dw;  // stride multiples
            const bool inside = h >= 0 && h / g.sh < OH && w + (span_w - 1) * g.sw >= 0 && w / g.sw < OW;
            any |= inside;
            const bits* row = gp + (n_of[m] * OH + h / g.sh) * OW * O + grp * Og;
            a[terms * kMR + m] = !inside ? zeros.data() : span(row, w / g.sw, span_w, OW, O, free);
          }
          if (any) b[terms++] = packed.data() + (grp * taps + t) * term_size;
        }
        for (int64_t c0 = 0; c0 < Cg; c0 += shape.columns) {
          for (int64_t m = 0; m < mr; ++m) c[m] = dxp + ((n_of[m] * H + ih_of[m]) * W + iw_of[m]) * C + grp * Cg + c0;
          for (int64_t t = 0; t < terms; ++t) b_block[t] = b[t] + 2 * c0;
          multiply(mr, terms, a.data(), b_block.data(), K, ldb, c, std::min(shape.columns, Cg - c0),
                   Epilogue::kStoreBF16);
        }
      }
    }
  });
  return out;
}

// ∂W (O, C/G, kh, kw) = Σ_positions ∂Yᵀ[O × P] · X_tap[P × C], per tap, over blocks of P = kPositions
// output pixels of the batch: ∂Yᵀ of the block is transposed once, each tap's input pixels packed
// in pairs of positions; each task adds into its own float32 accumulator, summed at the end (long
// blocks: the accumulator, Og × C floats per tap, is read and written once per block).
at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                       const Geometry2d& g, int64_t groups) {
  const at::Tensor x = input.contiguous(), dy = grad.contiguous();
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t OH = dy.size(1), OW = dy.size(2), O = dy.size(3), Cg = C / groups, Og = O / groups;
  const int64_t CP = round_up(Cg, 16), taps = g.kh * g.kw;
  const Blocking shape = blocking(Cg);
  const int64_t pixels = N * OH * OW, blocks = (pixels + kPositions - 1) / kPositions;
  const int64_t per_task = groups * taps * Og * CP;
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), blocks), 1);
  at::Tensor partial = at::zeros({tasks, per_task}, x.options().dtype(at::kFloat));
  const bits* xp = reinterpret_cast<const bits*>(x.const_data_ptr<at::BFloat16>());
  const bits* gp = reinterpret_cast<const bits*>(dy.const_data_ptr<at::BFloat16>());
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<bits> dyt(Og * (kPositions + 1));  // [Og][K]: ∂Yᵀ of the block for one group
    std::vector<bits> xb(kPositions * CP);         // [K/2][CP][2]: one tap's input pixels
    const std::vector<bits> zeros(CP, 0);
    const bits* a[kMR];
    void* c[kMR];
    for (int64_t t = begin; t < end; ++t) {
      float* acc = pp + t * per_task;
      for (int64_t block = blocks * t / tasks; block < blocks * (t + 1) / tasks; ++block) {
        const int64_t p0 = block * kPositions, K = std::min(kPositions, pixels - p0), ld = K + 1;
        for (int64_t grp = 0; grp < groups; ++grp) {
          for (int64_t k = 0; k < K; ++k) {
            const bits* src = gp + (p0 + k) * O + grp * Og;
            for (int64_t o = 0; o < Og; ++o) dyt[o * ld + k] = src[o];
          }
          for (int64_t i = 0; i < g.kh; ++i) {
            for (int64_t j = 0; j < g.kw; ++j) {
              bool any = false;
              for (int64_t k = 0; k < K; k += 2) {  // positions k and k + 1 → [CP][2] pairs
                const bits* src[2];
                for (int64_t e = 0; e < 2; ++e) {
                  const int64_t q = p0 + k + e, n = q / (OH * OW), oh = q / OW % OH, ow = q % OW;
                  const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
                  const bool inside = k + e < K && ih >= 0 && ih < H && iw >= 0 && iw < W;
                  src[e] = inside ? xp + ((n * H + ih) * W + iw) * C + grp * Cg : zeros.data();
                  any |= inside;
                }
                interleave(src[0], src[1], Cg, xb.data() + k * CP);
              }
              if (!any) continue;
              float* dw = acc + ((grp * taps + i * g.kw + j) * Og) * CP;
              for (int64_t o0 = 0; o0 < Og; o0 += shape.rows) {
                const int64_t mr = std::min(shape.rows, Og - o0);
                for (int64_t m = 0; m < mr; ++m) a[m] = dyt.data() + (o0 + m) * ld;
                for (int64_t c0 = 0; c0 < Cg; c0 += shape.columns) {
                  for (int64_t m = 0; m < mr; ++m) c[m] = dw + (o0 + m) * CP + c0;
                  const bits* b_tap = xb.data() + 2 * c0;
                  multiply(mr, 1, a, &b_tap, K, 2 * CP, c, std::min(shape.columns, Cg - c0), Epilogue::kAddFloat);
                }
              }
            }
          }
        }
      }
    }
  });
  // [G][kh][kw][Og][CP] → (O, Cg, kh, kw)
  return partial.sum(0)
      .view({groups, g.kh, g.kw, Og, CP})
      .narrow(4, 0, Cg)
      .permute({0, 3, 4, 1, 2})
      .reshape(weight_shape)
      .to(at::kBFloat16)
      .contiguous();
}

}  // namespace bf16
}  // namespace cnnlab

#else  // no AVX512-BF16 outside x86-64: the float32 kernels (and the Python algorithms) cover bfloat16

namespace cnnlab {
namespace bf16 {

bool supported() { return false; }

at::Tensor forward(const at::Tensor&, const at::Tensor&, const Geometry2d&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: bfloat16 kernels need AVX512-BF16");
}
at::Tensor input_grad(const at::Tensor&, const at::Tensor&, const Geometry2d&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: bfloat16 kernels need AVX512-BF16");
}
at::Tensor weight_grad(const at::Tensor&, const at::Tensor&, at::IntArrayRef, const Geometry2d&, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: bfloat16 kernels need AVX512-BF16");
}

}  // namespace bf16
}  // namespace cnnlab

#endif
