// Direct convolution of bfloat16 data, channels-last (NHWC), 2-D, on AMX tiles (Intel Xeon from
// Sapphire Rapids on): forward, input gradient and weight gradient. Compiled into every x86-64
// build; run only where the CPU has AMX-TILE and AMX-BF16 and the kernel grants the tiles
// (`supported()`), else correlate.cpp runs the AVX512-BF16 kernels of correlate_tiles.cpp.
//
// Every product is C[M × N] (float32) = Σ_k A[M × K] · B[K × N] on the tile registers:
//     tmm0–3  C, 2 × 2 tiles of 16 × 16 floats (32 rows × 32 columns), kept across all of K;
//     tmm4–5  A, two 16-row tiles of 32 bfloat16 values of K (one 64-byte row each);
//     tmm6–7  B, two 16-column tiles, in pairs of k ([K/2][N][2]: tdpbf16ps multiplies the pair
//             A[m][2k], A[m][2k + 1] with B[2k][n], B[2k + 1][n] into one float lane).
// - stride 1 (forward and input gradient; the weight gradient from 16×16 images up): products
//   over a zero-bordered copy of each image, 32 output positions one A tile per kernel row read in
//   place (padded_product, padded_weight_grad);
// - other strides, groups and small images: the receptive fields of 32 output pixels gathered side
//   by side (run; the input gradient by stride classes, each with only the taps that reach it), and
//   for the weight gradient blocks of kPositions pixels (weight_grad).
// The weight gradients take A from ∂Y transposed (pixel pairs interleaved, then 16 × 16 blocks of
// 32-bit words transposed in registers) and B from the receptive fields paired row by row; each
// task adds into its own float32 accumulator, summed at the end.
// Results are rounded to bfloat16 once, from the float32 sums (torch's oneDNN rounds the same way).

#include "correlate_tiles.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace cnnlab {
namespace amx {
namespace {

constexpr int64_t kBlockRows = 32;   // rows of C per product block: two A tiles
constexpr int64_t kDepth = 32;       // values of K per A tile row (64 bytes of bfloat16)
constexpr int64_t kPositions = 256;  // output pixels per weight-gradient block (its K: 8 tile steps)

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Rows [K × N] of B (row-major; any leading dimensions) as pairs of k, the layout tdpbf16ps reads:
// out[p][n][e] = B[2p + e][n] for p < round_up(K, 32) / 2 and n < ldn, zero past K and N.
at::Tensor pair_rows(const at::Tensor& rows, int64_t ldn) {
  const int64_t K = rows.size(-2), N = rows.size(-1);
  const at::Tensor padded = at::constant_pad_nd(rows, {0, ldn - N, 0, round_up(K, kDepth) - K}, 0);
  std::vector<int64_t> shape(padded.sizes().begin(), padded.sizes().end() - 2);
  shape.insert(shape.end(), {round_up(K, kDepth) / 2, 2, ldn});
  return padded.reshape(shape).transpose(-1, -2).contiguous();
}

}  // namespace

bool supported() {
#if defined(__x86_64__)
  static const bool granted = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool tiles = (edx >> 24 & 1) && (edx >> 22 & 1);  // AMX-TILE, AMX-BF16
    constexpr long kRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    return tiles && __builtin_cpu_supports("avx512bf16") && syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  }();
  return granted;
#else
  return false;
#endif
}

}  // namespace amx

// The AMX kernels' filter packing as an op, so that tests check the layout on any CPU.
TORCH_LIBRARY_FRAGMENT(cnnlab_native, m) {
  m.def("amx_pair_rows(Tensor rows, int ldn) -> Tensor");
  m.impl("amx_pair_rows", c10::DispatchKey::CPU, TORCH_FN(amx::pair_rows));
}

}  // namespace cnnlab

#if defined(__x86_64__)

// Everything below runs only where supported() says so.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")

namespace cnnlab {
namespace amx {
namespace {

using bits = uint16_t;  // bfloat16 as stored

// Palette 1: eight tiles of 16 rows × 64 bytes, the only shape used here.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// Loads the tile shape for the calling thread; paired with _tile_release() at the end of its work.
void configure() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) config.rows[t] = 16, config.bytes_per_row[t] = 64;
  _tile_loadconfig(&config);
}

// C[16·MT × 16·NT] (float32, ldc values per row) = (C +) Σ_taps Σ over `steps` steps of 32 k:
// A_t[16·MT × 32] (row-major bfloat16 at a + a_offsets[t], lda values per row) · B_t[32 × 16·NT]
// (at b + t·b_tap, pairs of k: pair row p holds ldn columns of 2 values). One tap (a_offsets
// {0}) is a plain product; several read the taps of a convolution from one padded image.
template <int MT, int NT>
void product(const bits* a, int64_t lda, const int64_t* a_offsets, int64_t taps, const bits* b, int64_t b_tap,
             int64_t ldn, int64_t steps, float* c, int64_t ldc, bool accumulate) {
  const int64_t c_stride = ldc * 4, a_stride = lda * 2, b_stride = ldn * 4;
  if (accumulate) {
    _tile_loadd(0, c, c_stride);
    if (NT > 1) _tile_loadd(1, c + 16, c_stride);
    if (MT > 1) _tile_loadd(2, c + 16 * ldc, c_stride);
    if (MT > 1 && NT > 1) _tile_loadd(3, c + 16 * ldc + 16, c_stride);
  } else {
    _tile_zero(0);
    if (NT > 1) _tile_zero(1);
    if (MT > 1) _tile_zero(2);
    if (MT > 1 && NT > 1) _tile_zero(3);
  }
  for (int64_t t = 0; t < taps; ++t) {
    const bits* at = a + a_offsets[t];
    const bits* bt = b + t * b_tap;
    for (int64_t s = 0; s < steps; ++s) {
      const bits* bs = bt + s * 16 * ldn * 2;
      _tile_loadd(4, at + s * kDepth, a_stride);
      _tile_loadd(6, bs, b_stride);
      _tile_dpbf16ps(0, 4, 6);
      if (MT > 1) {
        _tile_loadd(5, at + 16 * lda + s * kDepth, a_stride);
        _tile_dpbf16ps(2, 5, 6);
      }
      if (NT > 1) {
        _tile_loadd(7, bs + 32, b_stride);
        _tile_dpbf16ps(1, 4, 7);
        if (MT > 1) _tile_dpbf16ps(3, 5, 7);
      }
    }
  }
  _tile_stored(0, c, c_stride);
  if (NT > 1) _tile_stored(1, c + 16, c_stride);
  if (MT > 1) _tile_stored(2, c + 16 * ldc, c_stride);
  if (MT > 1 && NT > 1) _tile_stored(3, c + 16 * ldc + 16, c_stride);
}

using ProductFn = void (*)(const bits*, int64_t, const int64_t*, int64_t, const bits*, int64_t, int64_t, int64_t,
                           float*, int64_t, bool);

// The product for `rows` (≤ 32) rows and `columns` (≤ 32) columns of C.
ProductFn product_for(int64_t rows, int64_t columns) {
  static constexpr ProductFn table[2][2] = {{&product<1, 1>, &product<1, 2>}, {&product<2, 1>, &product<2, 2>}};
  return table[rows > 16][columns > 16];
}

constexpr int64_t kNoOffset[1] = {0};

// `count` float32 values rounded to bfloat16 (round to nearest even, as torch rounds).
void round_row(const float* src, bits* dst, int64_t count) {
  for (int64_t c = 0; c < count; c += 16) {
    const int64_t left = std::min<int64_t>(16, count - c);
    const __mmask16 mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __m512 value = _mm512_maskz_loadu_ps(mask, src + c);
    _mm256_mask_storeu_epi16(dst + c, mask, (__m256i)_mm512_cvtneps_pbh(value));
  }
}

// `count` values from `src`, or zeros where it is null, to `dst` (masked moves: the short copies of
// a thin input's pixels cost a call each as memcpy).
void copy_values(bits* dst, const bits* src, int64_t count) {
  for (int64_t c = 0; c < count; c += 32) {
    const int64_t left = std::min<int64_t>(32, count - c);
    const __mmask32 mask = left >= 32 ? ~__mmask32(0) : (__mmask32(1) << left) - 1;
    _mm512_mask_storeu_epi16(dst + c, mask, src ? _mm512_maskz_loadu_epi16(mask, src + c) : _mm512_setzero_si512());
  }
}


// The gathered product of the forward and the input gradient: every pixel of the destination
// image (N, DH, DW, DC) is Σ_taps (source pixel of the tap) · B_tap, the source image being
// (N, SH, SW, SC); tap (i, j) of destination pixel (dh, dw) reads source pixel
// (rows[i·DH + dh], cols[j·DW + dw]), or nothing where either is −1. Destination pixels fall into
// classes by (dh mod class_h, dw mod class_w); a class gathers only the taps that reach it.
struct Gather {
  const bits* src;
  int64_t SH, SW, SC;
  bits* dst;
  int64_t N, DH, DW, DC;
  int64_t groups, K1, Ng, kh, kw;  // K1 source and Ng destination channels per group
  std::vector<int64_t> rows, cols;
  int64_t class_h, class_w;
  at::Tensor filters;  // [G][kh][kw][K1][Ng] bfloat16: B_tap of each group
};

struct Class {
  int64_t rh, rw, height, width;  // destination rows rh, rh + class_h, … (height of them), columns alike
  std::vector<int64_t> taps;      // i·kw + j of the taps that reach it
  at::Tensor packed;              // [G][K/2][NP][2], K = round_up(taps·K1, 32): B of its taps, paired
};

void run(const Gather& P) {
  const int64_t NP = round_up(P.Ng, 16);
  std::vector<Class> classes;
  for (int64_t rh = 0; rh < std::min(P.class_h, P.DH); ++rh) {
    for (int64_t rw = 0; rw < std::min(P.class_w, P.DW); ++rw) {
      Class c{rh, rw, (P.DH - rh + P.class_h - 1) / P.class_h, (P.DW - rw + P.class_w - 1) / P.class_w, {}, {}};
      for (int64_t i = 0; i < P.kh; ++i) {
        bool row = false;
        for (int64_t dh = rh; dh < P.DH && !row; dh += P.class_h) row = P.rows[i * P.DH + dh] >= 0;
        for (int64_t j = 0; j < P.kw && row; ++j) {
          bool col = false;
          for (int64_t dw = rw; dw < P.DW && !col; dw += P.class_w) col = P.cols[j * P.DW + dw] >= 0;
          if (col) c.taps.push_back(i * P.kw + j);
        }
      }
      if (c.taps.empty()) {  // no tap reaches these pixels (a stride longer than the kernel): zeros
        for (int64_t n = 0; n < P.N; ++n) {
          for (int64_t dh = rh; dh < P.DH; dh += P.class_h) {
            for (int64_t dw = rw; dw < P.DW; dw += P.class_w) {
              std::fill_n(P.dst + ((n * P.DH + dh) * P.DW + dw) * P.DC, P.DC, bits(0));
            }
          }
        }
        continue;
      }
      const at::Tensor index = at::tensor(c.taps, at::kLong);
      const at::Tensor taps = P.filters.flatten(1, 2).index_select(1, index);  // [G][taps][K1][Ng]
      c.packed = pair_rows(taps.flatten(1, 2), NP);
      classes.push_back(std::move(c));
    }
  }
  struct Task {
    const Class* c;
    int64_t start;  // its first pixel, counted (n, row, column) within the class
  };
  std::vector<Task> tasks;
  for (const Class& c : classes) {
    for (int64_t start = 0; start < P.N * c.height * c.width; start += kBlockRows) tasks.push_back({&c, start});
  }
  at::parallel_for(0, int64_t(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    int64_t K_most = 0;
    for (const Class& c : classes) K_most = std::max(K_most, round_up(int64_t(c.taps.size()) * P.K1, kDepth));
    std::vector<bits> a(kBlockRows * K_most);
    std::vector<float> out(kBlockRows * kBlockRows);
    std::vector<const bits*> source(kBlockRows * P.kh * P.kw);  // per row and slot: the pixel read, or null
    std::vector<bits*> target(kBlockRows);
    configure();
    std::vector<const int64_t*> row_of(P.kh * P.kw), col_of(P.kh * P.kw);  // per slot: its tap's table rows
    for (int64_t t = begin; t < end; ++t) {
      const Class& c = *tasks[t].c;
      const int64_t taps = c.taps.size(), K = round_up(taps * P.K1, kDepth);
      for (int64_t s = 0; s < taps; ++s) {
        row_of[s] = P.rows.data() + c.taps[s] / P.kw * P.DH, col_of[s] = P.cols.data() + c.taps[s] % P.kw * P.DW;
      }
      const int64_t count = std::min(kBlockRows, P.N * c.height * c.width - tasks[t].start);
      for (int64_t m = 0; m < count; ++m) {
        const int64_t q = tasks[t].start + m, n = q / (c.height * c.width);
        const int64_t dh = c.rh + (q / c.width % c.height) * P.class_h, dw = c.rw + (q % c.width) * P.class_w;
        target[m] = P.dst + ((n * P.DH + dh) * P.DW + dw) * P.DC;
        const bits* image = P.src + n * P.SH * P.SW * P.SC;
        for (int64_t s = 0; s < taps; ++s) {
          const int64_t sh = row_of[s][dh], sw = col_of[s][dw];
          source[m * taps + s] = sh >= 0 && sw >= 0 ? image + (sh * P.SW + sw) * P.SC : nullptr;
        }
      }
      for (int64_t m = count; m < kBlockRows; ++m) std::fill_n(a.data() + m * K, K, bits(0));
      for (int64_t grp = 0; grp < P.groups; ++grp) {
        for (int64_t m = 0; m < count; ++m) {
          bits* row = a.data() + m * K;
          const bits* const* pixels = source.data() + m * taps;
          for (int64_t s = 0; s < taps;) {  // runs of taps reading neighbouring pixels (or padding): one copy
            int64_t run = 1;
            const bits* first = pixels[s];
            const auto continues = [&](const bits* next) {
              return first ? P.K1 == P.SC && next == first + run * P.SC : next == nullptr;
            };
            while (s + run < taps && continues(pixels[s + run])) ++run;
            copy_values(row, first ? first + grp * P.K1 : nullptr, run * P.K1);
            row += run * P.K1, s += run;
          }
          copy_values(row, nullptr, a.data() + (m + 1) * K - row);
        }
        const bits* b = reinterpret_cast<const bits*>(c.packed.const_data_ptr<at::BFloat16>()) + grp * K * NP;
        for (int64_t n0 = 0; n0 < P.Ng; n0 += kBlockRows) {
          const int64_t columns = std::min(kBlockRows, P.Ng - n0);
          product_for(count, columns)(a.data(), K, kNoOffset, 1, b + 2 * n0, 0, NP, K / kDepth, out.data(),
                                      kBlockRows, false);
          for (int64_t m = 0; m < count; ++m) {
            round_row(out.data() + m * kBlockRows, target[m] + grp * P.Ng + n0, columns);
          }
        }
      }
    }
    _tile_release();
  });
}

const bits* values(const at::Tensor& t) { return reinterpret_cast<const bits*>(t.const_data_ptr<at::BFloat16>()); }
bits* values(at::Tensor& t) { return reinterpret_cast<bits*>(t.data_ptr<at::BFloat16>()); }

// (O, C/G, kh, kw) → [G][kh][kw][C/G][O/G] (forward's B), or [G][kh][kw][O/G][C/G] (transposed).
at::Tensor filters(const at::Tensor& weight, int64_t groups, bool transposed) {
  const at::Tensor w = weight.view({groups, weight.size(0) / groups, weight.size(1), weight.size(2), weight.size(3)});
  return (transposed ? w.permute({0, 3, 4, 1, 2}) : w.permute({0, 3, 4, 2, 1})).contiguous();
}

// 32-bit words [rows × columns] (ld = columns; both multiples of 16) → [columns × rows] (ld_out
// per row), 16 × 16 at a time in registers: pairs of rows interleaved by 32 then 64 bits, then
// 128-bit quarters gathered from four rows each.
void transpose_words(const uint32_t* src, int64_t rows, int64_t columns, uint32_t* dst, int64_t ld_out) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    for (int64_t c0 = 0; c0 < columns; c0 += 16) {
      __m512i r[16], t[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(src + (r0 + i) * columns + c0);
      for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);      // a0 b0 a1 b1 per quarter
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);  // a2 b2 a3 b3
      }
      for (int i = 0; i < 16; i += 4) {  // u[i + k]: column k of each quarter, from rows i … i + 3
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
      }
      for (int k = 0; k < 4; ++k) {  // columns k, k + 4, k + 8, k + 12: quarter q of rows 0, 4, 8, 12's words
        const __m512i v0 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88), v1 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xDD);
        const __m512i v2 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);
        const __m512i v3 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xDD);
        uint32_t* out = dst + (c0 + k) * ld_out + r0;
        _mm512_storeu_si512(out, _mm512_shuffle_i32x4(v0, v2, 0x88));
        _mm512_storeu_si512(out + 4 * ld_out, _mm512_shuffle_i32x4(v1, v3, 0x88));
        _mm512_storeu_si512(out + 8 * ld_out, _mm512_shuffle_i32x4(v0, v2, 0xDD));
        _mm512_storeu_si512(out + 12 * ld_out, _mm512_shuffle_i32x4(v1, v3, 0xDD));
      }
    }
  }
}

// One image at a time with zero borders, its pixels one after the other ([Hp·Wp][C], the image at
// (top, left)), and zeros past the end for the reads of the last blocks. The borders and the
// tail are zero from the allocation on and never written, so each image copies only its rows.
struct PaddedImage {
  int64_t H, W, C, top, left, Hp, Wp;
  std::vector<bits> values;
  PaddedImage(int64_t H, int64_t W, int64_t C, int64_t top, int64_t bottom, int64_t left, int64_t right, int64_t tail)
      : H(H), W(W), C(C), top(top), left(left), Hp(H + top + bottom), Wp(W + left + right),
        values((Hp * Wp + 2 * kBlockRows + 2) * C + tail, bits(0)) {}
  void fill(const bits* image) {
    for (int64_t h = 0; h < H; ++h) {
      std::memcpy(values.data() + ((h + top) * Wp + left) * C, image + h * W * C, W * C * sizeof(bits));
    }
  }
};

// The correlation of stride 1 (dilation 1 along W) as products over each image's padded copy,
// without a gather: output pixel (oh, ow) is position q = oh·Wp + ow of the copy, and kernel row i
// reads the kw·C values from pixel q + i·dh·Wp on, one row of A; 32 consecutive positions are
// one A tile at a stride of C values, so a block is kh terms of round_up(kw·C, 32) values (an RGB
// stem: 3 terms of 32 for 27 values; the values past kw·C meet zero rows of B). The Wp − DW
// positions at the end of each row are computed and dropped (2 of 34 at 32×32, 3×3).
// dst (N, DH, DW, DC) from src (N, SH, SW, SC) padded by (top, left) (bottom, right so that
// DH = Hp − dh·(kh − 1), DW = Wp − kw + 1); `packed` the kernel rows [kh][Kr/2][NP][2], Kr =
// round_up(kw·SC, 32).
void padded_product(const bits* src, int64_t N, int64_t SH, int64_t SW, int64_t SC, int64_t top, int64_t left,
                    const at::Tensor& packed, int64_t kh, int64_t kw, int64_t dh, bits* dst, int64_t DH, int64_t DW,
                    int64_t DC) {
  const int64_t NP = packed.size(-2), Kr = 2 * packed.size(-3);
  const int64_t bottom = DH + dh * (kh - 1) - SH - top, right = DW + kw - 1 - SW - left;
  const bits* b = reinterpret_cast<const bits*>(packed.const_data_ptr<at::BFloat16>());
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    PaddedImage image(SH, SW, SC, top, bottom, left, right, Kr);
    const int64_t Wp = image.Wp, positions = DH * Wp;
    std::vector<int64_t> offsets(kh);
    for (int64_t i = 0; i < kh; ++i) offsets[i] = i * dh * Wp * SC;
    std::vector<float> out(kBlockRows * kBlockRows);
    configure();
    for (int64_t n = begin; n < end; ++n) {
      image.fill(src + n * SH * SW * SC);
      for (int64_t n0 = 0; n0 < DC; n0 += kBlockRows) {  // a column block's filters stay in L1 across the image
        const int64_t columns = std::min(kBlockRows, DC - n0);
        for (int64_t q0 = 0; q0 < positions; q0 += kBlockRows) {
          const int64_t rows = std::min(kBlockRows, positions - q0);
          product_for(rows, columns)(image.values.data() + q0 * SC, SC, offsets.data(), kh, b + 2 * n0, Kr * NP, NP,
                                     Kr / kDepth, out.data(), kBlockRows, false);
          for (int64_t m = 0; m < rows; ++m) {
            const int64_t oh = (q0 + m) / Wp, ow = (q0 + m) % Wp;
            if (ow < DW) round_row(out.data() + m * kBlockRows, dst + ((n * DH + oh) * DW + ow) * DC + n0, columns);
          }
        }
      }
    }
    _tile_release();
  });
}

// The weight gradient of the same products: ∂W_term[O × span·C] = Σ_q ∂Y_qᵀ · (the span·C values
// from pixel q + offset_term of the copy), ∂Y zero at the dropped positions, a term being a kernel
// row (span = kw) or one tap (span = 1, from 128 channels on, where pairing whole kernel rows
// copies kw times as many values as the products use well: 128→128 3×3 @8², batch 256, 5.6 ms
// by taps against 6.9 by rows; 64→128 @16² 6.8 by rows against 10.8 by taps, its A read once per
// tap instead of once per row). A is ∂Y of one image transposed to
// [O][positions]; B the copy's rows of span·C values paired for neighbouring positions, once
// from each even position and once from each odd one (a term's offset picks the copy whose pairs
// start where its positions do). Each task sums its images into its own float32 accumulator
// [terms][Op][Kw]; → (O, C, kh, kw) float32.
at::Tensor padded_weight_grad(const bits* x, const bits* dy, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH,
                              int64_t OW, int64_t O, const tiles::Geometry2d& g) {
  const int64_t span = C >= 128 && C % 16 == 0 ? 1 : g.kw, terms = g.kh * (g.kw / span);
  const int64_t width = span * C, Kw = round_up(width, 16), Op = round_up(O, kDepth), O16 = round_up(O, 16);
  // an even row length where terms are whole kernel rows: every term's offset is even, the pairs
  // from odd positions are never read (half the pairing), and no pair of ∂Y straddles two rows
  const int64_t bottom = OH + g.dh * (g.kh - 1) - H - g.ph, right = OW + g.kw - 1 - W - g.pw;
  const int64_t extra = span == g.kw ? (W + g.pw + right) % 2 : 0;
  const bool odd_offsets = span != g.kw;
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), N), 1);
  at::Tensor partial = at::zeros({tasks, terms, Op, Kw}, at::kFloat);
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    PaddedImage image(H, W, C, g.ph, bottom, g.pw, right + extra, 2 * Kw);
    const int64_t Wp = image.Wp, positions = round_up(OH * Wp, kBlockRows);
    const int64_t pairs_count = (image.Hp * Wp) / 2 + kBlockRows;  // pairs a block of the last term reads
    std::vector<bits> pairs[2] = {std::vector<bits>(pairs_count * 2 * Kw),
                                  std::vector<bits>(odd_offsets ? pairs_count * 2 * Kw : 0)};
    std::vector<bits> dy_pairs(positions * O16), a(Op * positions, bits(0));
    const std::vector<bits> zeros(O16, bits(0));
    configure();
    for (int64_t t = begin; t < end; ++t) {
      float* acc = partial.data_ptr<float>() + t * terms * Op * Kw;
      for (int64_t n = N * t / tasks; n < N * (t + 1) / tasks; ++n) {
        image.fill(x + n * H * W * C);
        const bits* p = image.values.data();
        for (int64_t r = 0; r < pairs_count; ++r) {  // [Kw][2] per pair: positions 2r, 2r + 1 (even), 2r + 1, 2r + 2
          tiles::pair_rows(p + 2 * r * C, p + (2 * r + 1) * C, width, pairs[0].data() + 2 * r * Kw);
          if (odd_offsets) {
            tiles::pair_rows(p + (2 * r + 1) * C, p + (2 * r + 2) * C, width, pairs[1].data() + 2 * r * Kw);
          }
        }
        for (int64_t q = 0; q < positions; q += 2) {  // ∂Y at positions q, q + 1, paired: [O16][2]
          const int64_t oh = q / Wp, ow = q % Wp;      // (Wp odd: q + 1 may start the next row)
          const bits* pixel[2];
          for (int64_t e = 0, h = oh, w = ow; e < 2; ++e, ++w) {
            if (w == Wp) h += 1, w = 0;
            pixel[e] = h < OH && w < OW ? dy + ((n * OH + h) * OW + w) * O : zeros.data();
          }
          tiles::pair_rows(pixel[0], pixel[1], O, dy_pairs.data() + q * O16);
        }
        transpose_words(reinterpret_cast<const uint32_t*>(dy_pairs.data()), positions / 2, O16,
                        reinterpret_cast<uint32_t*>(a.data()), positions / 2);
        // chunks of kPositions: a block of 32 rows of A (16 KiB) stays in L1 across the column blocks
        for (int64_t term = 0; term < terms; ++term) {
          const int64_t offset = term / (g.kw / span) * g.dh * Wp + term % (g.kw / span) * span;
          for (int64_t p0 = 0; p0 < positions; p0 += kPositions) {
            const int64_t steps = std::min(kPositions, positions - p0) / kDepth;
            const bits* b = pairs[offset & 1].data() + ((p0 + offset) / 2) * 2 * Kw;
            for (int64_t o0 = 0; o0 < O; o0 += kBlockRows) {
              for (int64_t c0 = 0; c0 < width; c0 += kBlockRows) {
                product_for(O - o0, width - c0)(a.data() + o0 * positions + p0, positions, kNoOffset, 1, b + 2 * c0, 0,
                                                Kw, steps, acc + (term * Op + o0) * Kw + c0, Kw, true);
              }
            }
          }
        }
      }
    }
    _tile_release();
  });
  // [kh][kw/span][Op][Kw], column s·C + c of term (i, u) is tap (i, u·span + s) → (O, C, kh, kw)
  return partial.sum(0)
      .narrow(1, 0, O)
      .narrow(2, 0, width)
      .view({g.kh, g.kw / span, O, span, C})
      .permute({2, 4, 0, 1, 3})
      .reshape({O, C, g.kh, g.kw});
}

// Kernel rows [kh][K][N] (any K, N) as B for padded_product: [kh][round_up(K, 32)/2][round_up(N, 16)][2].
at::Tensor pack_rows(const at::Tensor& rows) { return pair_rows(rows, round_up(rows.size(-1), 16)); }

// Where the padded products run: stride 1, one group, dilation 1 along W (a kernel row's taps
// are neighbours), and rows long enough that the dropped positions cost little: Wp ≤ 1.25·DW for
// the forward and input gradient (8×8 images and up with 3×3 filters; 128→128 @8², batch 256:
// 2.2 ms against 2.7 gathered), Wp < 1.25·DW for the weight gradient (16×16 and up; at 8×8 the
// gathered blocks of 256 positions won, 4.0 ms against 5.8).
bool padded_fits(const tiles::Geometry2d& g, int64_t groups, int64_t DW, bool weight_grad = false) {
  const int64_t Wp = DW + g.kw - 1;
  const bool short_rows = weight_grad ? 4 * Wp >= 5 * DW : 4 * Wp > 5 * DW;
  return g.sh == 1 && g.sw == 1 && g.dw == 1 && groups == 1 && !short_rows;
}

}  // namespace


at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const tiles::Geometry2d& g, int64_t groups,
                   int64_t OH, int64_t OW) {
  const at::Tensor x = input.contiguous();
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3), O = weight.size(0);
  at::Tensor out = at::empty({N, OH, OW, O}, x.options());
  if (padded_fits(g, groups, OW)) {
    const at::Tensor rows = filters(weight, 1, false).view({g.kh, g.kw * C, O});  // [kh][kw·C][O]
    padded_product(values(x), N, H, W, C, g.ph, g.pw, pack_rows(rows), g.kh, g.kw, g.dh, values(out), OH, OW, O);
    return out;
  }
  run({values(x), H, W, C, values(out), N, OH, OW, O, groups, C / groups, O / groups, g.kh, g.kw,
       tiles::forward_taps(g.kh, OH, H, g.sh, g.ph, g.dh), tiles::forward_taps(g.kw, OW, W, g.sw, g.pw, g.dw),
       1, 1, filters(weight, groups, false)});
  return out;
}

at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const tiles::Geometry2d& g, int64_t groups,
                      int64_t H, int64_t W) {
  const at::Tensor dy = grad.contiguous();
  const int64_t N = dy.size(0), OH = dy.size(1), OW = dy.size(2), O = dy.size(3), C = weight.size(1) * groups;
  at::Tensor out = at::empty({N, H, W, C}, dy.options());
  const int64_t top = g.dh * (g.kh - 1) - g.ph, left = g.kw - 1 - g.pw;
  if (padded_fits(g, groups, W) && top >= 0 && left >= 0) {  // ∂X: ∂Y padded, the filters rotated
    const at::Tensor rows = filters(weight, 1, true).flip({1, 2}).reshape({g.kh, g.kw * O, C});  // [kh][kw·O][C]
    padded_product(values(dy), N, OH, OW, O, top, left, pack_rows(rows), g.kh, g.kw, g.dh, values(out), H, W, C);
    return out;
  }
  run({values(dy), OH, OW, O, values(out), N, H, W, C, groups, O / groups, C / groups, g.kh, g.kw,
       tiles::input_grad_taps(g.kh, H, OH, g.sh, g.ph, g.dh),
       tiles::input_grad_taps(g.kw, W, OW, g.sw, g.pw, g.dw), g.sh, g.sw, filters(weight, groups, true)});
  return out;
}

at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                       const tiles::Geometry2d& g, int64_t groups) {
  const at::Tensor x = input.contiguous(), dy = grad.contiguous();
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t OH = dy.size(1), OW = dy.size(2), O = dy.size(3), Cg = C / groups, Og = O / groups;
  if (padded_fits(g, groups, OW, true)) {
    return padded_weight_grad(values(x), values(dy), N, H, W, C, OH, OW, O, g).to(input.scalar_type()).contiguous();
  }
  const int64_t width = g.kh * g.kw * Cg, WP = round_up(width, 16), OP = round_up(Og, 16);
  const int64_t pixels = N * OH * OW, blocks = (pixels + kPositions - 1) / kPositions;
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), blocks), 1);
  const std::vector<int64_t> rows = tiles::forward_taps(g.kh, OH, H, g.sh, g.ph, g.dh);
  const std::vector<int64_t> cols = tiles::forward_taps(g.kw, OW, W, g.sw, g.pw, g.dw);
  at::Tensor partial = at::zeros({tasks, groups, OP, WP}, x.options().dtype(at::kFloat));
  const bits* xp = values(x);
  const bits* gp = values(dy);
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<bits> cols_block(kPositions * WP), b(kPositions * WP);  // receptive fields; the same paired
    std::vector<bits> dy_pairs(kPositions * OP), a(OP * kPositions);    // ∂Y's pixels paired; transposed: A
    const std::vector<bits> zeros(std::max(OP, WP), bits(0));
    configure();
    for (int64_t t = begin; t < end; ++t) {
      float* acc = partial.data_ptr<float>() + t * groups * OP * WP;
      for (int64_t block = blocks * t / tasks; block < blocks * (t + 1) / tasks; ++block) {
        const int64_t p0 = block * kPositions, count = std::min(kPositions, pixels - p0);
        for (int64_t grp = 0; grp < groups; ++grp) {
          for (int64_t k = 0; k < kPositions; ++k) {  // receptive fields, [kPositions][WP]
            bits* row = cols_block.data() + k * WP;
            copy_values(row, nullptr, WP);
            if (k >= count) continue;
            const int64_t q = p0 + k, n = q / (OH * OW), oh = q / OW % OH, ow = q % OW;
            for (int64_t i = 0; i < g.kh; ++i) {
              const int64_t ih = rows[i * OH + oh];
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iw = cols[j * OW + ow];
                if (ih < 0 || iw < 0) continue;
                copy_values(row + (i * g.kw + j) * Cg, xp + ((n * H + ih) * W + iw) * C + grp * Cg, Cg);
              }
            }
          }
          for (int64_t k = 0; k < kPositions; k += 2) {  // B: receptive fields k, k + 1 → [WP][2]
            tiles::pair_rows(cols_block.data() + k * WP, cols_block.data() + (k + 1) * WP, WP, b.data() + k * WP);
          }
          for (int64_t k = 0; k < kPositions; k += 2) {  // ∂Y's pixels k, k + 1 → [OP][2]
            const bits* first = k < count ? gp + (p0 + k) * O + grp * Og : zeros.data();
            const bits* second = k + 1 < count ? gp + (p0 + k + 1) * O + grp * Og : zeros.data();
            tiles::pair_rows(first, second, Og, dy_pairs.data() + k * OP);
          }
          // A[o][2q + e] = ∂Y[2q + e][o]: the [kPositions/2][OP] words transposed
          transpose_words(reinterpret_cast<const uint32_t*>(dy_pairs.data()), kPositions / 2, OP,
                          reinterpret_cast<uint32_t*>(a.data()), kPositions / 2);
          float* dw = acc + grp * OP * WP;
          for (int64_t o0 = 0; o0 < Og; o0 += kBlockRows) {
            for (int64_t c0 = 0; c0 < width; c0 += kBlockRows) {
              product_for(Og - o0, width - c0)(a.data() + o0 * kPositions, kPositions, kNoOffset, 1, b.data() + 2 * c0,
                                               0, WP, kPositions / kDepth, dw + o0 * WP + c0, WP, true);
            }
          }
        }
      }
    }
    _tile_release();
  });
  // [G][OP][WP] → (O, Cg, kh, kw), column = tap·Cg + c
  return partial.sum(0)
      .narrow(1, 0, Og)
      .narrow(2, 0, width)
      .reshape({groups, Og, g.kh, g.kw, Cg})
      .permute({0, 1, 4, 2, 3})
      .reshape(weight_shape)
      .to(input.scalar_type())
      .contiguous();
}

}  // namespace amx
}  // namespace cnnlab

#pragma GCC pop_options

#else  // x86-64 only

namespace cnnlab {
namespace amx {

at::Tensor forward(const at::Tensor&, const at::Tensor&, const tiles::Geometry2d&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: the AMX kernels need an x86-64 CPU with AMX-BF16");
}
at::Tensor input_grad(const at::Tensor&, const at::Tensor&, const tiles::Geometry2d&, int64_t, int64_t, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: the AMX kernels need an x86-64 CPU with AMX-BF16");
}
at::Tensor weight_grad(const at::Tensor&, const at::Tensor&, at::IntArrayRef, const tiles::Geometry2d&, int64_t) {
  TORCH_CHECK(false, "cnnlab_native: the AMX kernels need an x86-64 CPU with AMX-BF16");
}

}  // namespace amx
}  // namespace cnnlab

#endif
