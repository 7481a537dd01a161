// Depthwise convolution (one filter per channel, groups == channels == out_channels) of float32 and
// bfloat16 data, contiguous (NCHW) and channels-last (NHWC): forward, input gradient and weight
// gradient, each a few multiply-adds per output that the compiler vectorises, in float32 (bfloat16
// values are widened on load and the results rounded once).
//
//     y[n, c, oh, ow] = Σ_{i, j} w[c, i, j] · x[n, c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]
//
// torch's CPU depthwise convolution is a known weak spot (pytorch issue 13716): it runs about as
// long as a dense 3×3 convolution of a quarter of the channels. Here each layout loops so that
// the innermost loop runs over contiguous values:
// - NHWC: over the channels of a pixel (per output pixel, kLanes channels' running sums in a register
//   over every tap, the filters stored [kh][kw][C]), the input rows an image's outputs read first
//   copied into a zero-bordered float32 band so that every tap is a fixed offset, with no test for
//   the image's edges;
// - NCHW: over the output positions of a plane (each tap one pass over a zero-bordered copy of the
//   plane, split into stride phases so that the pass is contiguous for any stride; a tap's filter
//   value broadcast), one (n, c) plane per task.
// The input gradient is the forward's correlation of ∂y: NCHW once per stride phase of ∂x; NHWC
// with the filters rotated (stride 1), or per ∂x pixel over the outputs that reach it. The weight
// gradient sums per task (NHWC: rows of the batch; NCHW: channels) in float32.

#include "correlate_tiles.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

namespace cnnlab {
namespace {

using tiles::Geometry2d;  // (kh, kw, sh, sw, ph, pw, dh, dw), the direct convolution's too

Geometry2d geometry(int64_t kh, int64_t kw, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  return {kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]};
}

int64_t output_size(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (size + 2 * p - d * (k - 1) - 1) / s + 1;
}

bool channels_last(const at::Tensor& t) {
  return t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous();
}

// float32 running sums of a float32 or bfloat16 tensor's values.
template <typename T>
float wide(T value) {
  return static_cast<float>(value);
}

// Filters (C, 1, kh, kw) as float32 [kh][kw][C] (NHWC: a tap's values for all channels side by
// side) or [C][kh][kw] (NCHW).
std::vector<float> filters(const at::Tensor& weight, bool by_tap) {
  at::Tensor w = weight.to(at::kFloat).reshape({weight.size(0), weight.size(2) * weight.size(3)});
  if (by_tap) w = w.t();
  w = w.contiguous();
  return std::vector<float>(w.const_data_ptr<float>(), w.const_data_ptr<float>() + w.numel());
}

// Values per running-sum block: one register of float32, 16 on AVX-512 builds, 8 elsewhere (GCC
// vectors wider than the registers went through the stack on AVX2: every broadcast filter value and
// running sum stored and reloaded, 4.3× torch's forward time at 128 channels @16², AMD EPYC Zen 3).
// The index lists pick a block pair's even and odd values, and interleave two blocks' values.
#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
#define CNNLAB_EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define CNNLAB_ODD_LANES 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#define CNNLAB_LOW_PAIRS 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define CNNLAB_HIGH_PAIRS 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#else
constexpr int64_t kLanes = 8;
#define CNNLAB_EVEN_LANES 0, 2, 4, 6, 8, 10, 12, 14
#define CNNLAB_ODD_LANES 1, 3, 5, 7, 9, 11, 13, 15
#define CNNLAB_LOW_PAIRS 0, 8, 1, 9, 2, 10, 3, 11
#define CNNLAB_HIGH_PAIRS 4, 12, 5, 13, 6, 14, 7, 15
#endif
constexpr int kChains = 4;      // blocks summed side by side: a multiply-add's latency is four of its issue slots
static_assert(kChains == 4, "forward_nhwc names its four sums");

// kLanes float32 lanes as a GCC vector: the running sums stay in registers.
using Lanes = float __attribute__((vector_size(4 * kLanes)));
using Words = uint32_t __attribute__((vector_size(4 * kLanes)));
using Halves = uint16_t __attribute__((vector_size(2 * kLanes)));

inline Lanes load(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline Lanes load(const at::BFloat16* p) {  // bfloat16 is the top half of a float32
  Halves h;
  std::memcpy(&h, p, sizeof(h));
  const Words w = __builtin_convertvector(h, Words) << 16;
  Lanes v;
  std::memcpy(&v, &w, sizeof(v));
  return v;
}

inline void store(float* p, Lanes v) { std::memcpy(p, &v, sizeof(v)); }

// Asks for the n values at `p` to be brought into the cache (the next plane, read while this one is summed).
template <typename T>
void prefetch(const T* p, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t k = 0; k < n * static_cast<int64_t>(sizeof(T)); k += 64) __builtin_prefetch(bytes + k);
}

// One plane with zero borders in float32, [Hp][Wp] (the image at (top, left)), kept as its sh·sw
// stride phases [Hq][Wq] (Hq = ⌈Hp/sh⌉, Wq = ⌈Wp/sw⌉; + slack): phase (a, b) holds
// padded[a + sh·r][b + sw·c]. The tap at (di, dj) of output (oh, ow) reads padded[oh·sh + di][ow·sw + dj],
// which is phase (di mod sh, dj mod sw) at (oh + ⌊di/sh⌋, ow + ⌊dj/sw⌋): with q = oh·Wq + ow, every tap
// reads q + offset(di, dj), one contiguous run per tap whatever the stride. With stride 1 the one
// phase is the padded plane. The borders stay zero from the allocation on; fill writes the image.
struct Plane {
  int64_t H, W, top, left, sh, sw, Hq, Wq;
  std::vector<float> values;
  std::vector<int64_t> column_target;  // [k]: where image column k (< sw) lands in row 0; column k + sw·m at + m
  Plane(int64_t H, int64_t W, int64_t top, int64_t bottom, int64_t left, int64_t right, int64_t tail = 0,
        int64_t sh = 1, int64_t sw = 1)
      : H(H), W(W), top(top), left(left), sh(sh), sw(sw), Hq((H + top + bottom + sh - 1) / sh),
        Wq((W + left + right + sw - 1) / sw), values(sh * sw * Hq * Wq + tail, 0.0f), column_target(sw) {
    for (int64_t k = 0; k < sw; ++k) column_target[k] = offset(0, left + k);
  }
  int64_t offset(int64_t di, int64_t dj) const { return (di % sh * sw + dj % sw) * Hq * Wq + di / sh * Wq + dj / sw; }
  template <typename T>
  void fill(const T* __restrict image) {
    int64_t phase = top % sh, row_in_phase = top / sh;  // of image row h (+ top), kept without dividing
    for (int64_t h = 0; h < H; ++h) {
      const T* __restrict src = image + h * W;
      float* __restrict row = values.data() + (phase * sw * Hq + row_in_phase) * Wq;
      if (++phase == sh) phase = 0, ++row_in_phase;
      if (sw == 1) {
        for (int64_t w = 0; w < W; ++w) row[left + w] = wide(src[w]);
        continue;
      }
      int64_t done = 0;  // columns split so far (a multiple of sw)
#if __has_builtin(__builtin_shufflevector)
      if (sw == 2) {  // 2·kLanes values at a time, the even and the odd columns picked out in registers
        float* __restrict even = row + column_target[0];
        float* __restrict odd = row + column_target[1];
        for (; done + 2 * kLanes <= W; done += 2 * kLanes) {
          const Lanes a = load(src + done), b = load(src + done + kLanes);
          store(even + done / 2, __builtin_shufflevector(a, b, CNNLAB_EVEN_LANES));
          store(odd + done / 2, __builtin_shufflevector(a, b, CNNLAB_ODD_LANES));
        }
      }
#endif
      for (int64_t k = 0; k < sw; ++k) {
        float* __restrict dst = row + column_target[k];
        for (int64_t w = done + k, m = done / sw; w < W; w += sw, ++m) dst[m] = wide(src[w]);
      }
    }
  }
};

inline void store(at::BFloat16* p, Lanes v) {  // rounded to nearest even, NaN kept NaN (as c10::BFloat16)
  Words w;
  std::memcpy(&w, &v, sizeof(w));
  const Words rounded = (w + 0x7FFFu + ((w >> 16) & 1u)) >> 16;
  const Words nan = (Words)(v != v);
  const Halves h = __builtin_convertvector((nan & 0x7FC0u) | (~nan & rounded), Halves);
  std::memcpy(p, &h, sizeof(h));
}

// n float32 values stored as T (bfloat16: a register at a time, rounded as above).
template <typename T>
void store(T* __restrict out, const float* __restrict in, int64_t n) {
  int64_t k = 0;
  if constexpr (!std::is_same_v<T, float>) {
    for (; k + kLanes <= n; k += kLanes) store(out + k, load(in + k));
  }
  for (; k < n; ++k) out[k] = static_cast<T>(in[k]);
}

// sums[q] = start + Σ_t taps[t] · src[q + offsets[t]] for q in [0, n) rounded up to whole blocks:
// kLanes consecutive positions are kLanes running sums in a register over every tap.
void correlate_run(const float* src, const int64_t* offsets, const float* taps, int64_t count, float* sums,
                   int64_t n, float start = 0.0f) {
  for (int64_t q = 0; q < n; q += kChains * kLanes) {
    Lanes acc[kChains];
    for (int u = 0; u < kChains; ++u) acc[u] = Lanes{} + start;
    for (int64_t t = 0; t < count; ++t) {
      for (int u = 0; u < kChains; ++u) acc[u] += taps[t] * load(src + q + offsets[t] + u * kLanes);
    }
    for (int u = 0; u < kChains; ++u) store(sums + q + u * kLanes, acc[u]);
  }
}

// The rows below and the columns right of the image that the last output's windows read.
std::pair<int64_t, int64_t> far_padding(int64_t H, int64_t W, int64_t OH, int64_t OW, const Geometry2d& g) {
  return {std::max<int64_t>(0, (OH - 1) * g.sh + g.dh * (g.kh - 1) + 1 - H - g.ph),
          std::max<int64_t>(0, (OW - 1) * g.sw + g.dw * (g.kw - 1) + 1 - W - g.pw)};
}

// NCHW: one plane per (n, c) in its stride phases; output (oh, ow) at q = oh·Wq + ow, every tap a
// run of the plane from its offset (the Wq − OW positions at the end of each row dropped).
template <typename T>
void forward_nchw(const T* x, const float* w, const float* bias, T* y, int64_t N, int64_t C, int64_t H, int64_t W,
                  int64_t OH, int64_t OW, const Geometry2d& g) {
  const auto [bottom, right] = far_padding(H, W, OH, OW, g);
  const int64_t taps = g.kh * g.kw;
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    Plane plane(H, W, g.ph, bottom, g.pw, right, 2 * kChains * kLanes + g.dw * (g.kw - 1), g.sh, g.sw);
    const int64_t Wq = plane.Wq;
    std::vector<int64_t> offsets(taps);
    for (int64_t t = 0; t < taps; ++t) offsets[t] = plane.offset(t / g.kw * g.dh, t % g.kw * g.dw);
    std::vector<float> sums(OH * Wq + kChains * kLanes);
    for (int64_t p = begin; p < end; ++p) {
      if (p + 1 < end) prefetch(x + (p + 1) * H * W, H * W);
      plane.fill(x + p * H * W);
      correlate_run(plane.values.data(), offsets.data(), w + p % C * taps, taps, sums.data(), OH * Wq, bias[p % C]);
      for (int64_t oh = 0; oh < OH; ++oh) store(y + (p * OH + oh) * OW, sums.data() + oh * Wq, OW);
    }
  });
}

// n values as float32 (bfloat16 widened a register at a time).
template <typename T>
void widen(float* __restrict out, const T* __restrict in, int64_t n) {
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) store(out + k, load(in + k));
  for (; k < n; ++k) out[k] = wide(in[k]);
}

int64_t whole_lanes(int64_t C) { return (C + kLanes - 1) / kLanes * kLanes; }

// NHWC: a band of an image's rows in float32, [rows][Wp][Cp]: the columns at `left` between zero
// borders, the channels padded with zeros to whole registers (Cp). Every output pixel reads its
// taps at fixed offsets from its tap (0, 0), with no test for the image's edges; bfloat16 is
// widened once per band instead of once per tap.
struct Band {
  int64_t W, C, Cp, left, Wp;
  std::vector<float> values;
  Band(int64_t rows, int64_t W, int64_t C, int64_t left, int64_t right)
      : W(W), C(C), Cp(whole_lanes(C)), left(left), Wp(W + left + right), values(rows * Wp * Cp, 0.0f) {}
  int64_t offset(int64_t di, int64_t dj) const { return (di * Wp + dj) * Cp; }
  // rows [first, first + count) of `image` (H, W, C); the rows outside it zero
  template <typename T>
  void fill(const T* image, int64_t H, int64_t first, int64_t count) {
    for (int64_t k = 0; k < count; ++k) {
      float* row = values.data() + offset(k, left);
      const int64_t ih = first + k;
      if (ih < 0 || ih >= H) {
        std::fill(row, row + W * Cp, 0.0f);
      } else if (Cp == C) {
        widen(row, image + ih * W * C, W * C);
      } else {
        for (int64_t w = 0; w < W; ++w) widen(row + w * Cp, image + (ih * W + w) * C, C);
      }
    }
  }
};

// Filters [kh·kw][C] as [kh·kw][Cp], zero beyond C.
std::vector<float> padded_taps(const float* w, int64_t taps, int64_t C) {
  const int64_t Cp = whole_lanes(C);
  std::vector<float> out(taps * Cp, 0.0f);
  for (int64_t t = 0; t < taps; ++t) std::copy_n(w + t * C, C, out.begin() + t * Cp);
  return out;
}

// The first `n` ≤ kLanes lanes of v into out (a row's last channels).
template <typename T>
void store_first(T* out, Lanes v, int64_t n) {
  if (n == kLanes) return store(out, v);
  float lanes[kLanes];
  store(lanes, v);
  for (int64_t k = 0; k < n; ++k) out[k] = static_cast<T>(lanes[k]);
}

// Runs f(n, oh_begin, oh_end, band) over the output rows [begin, end) of (N·OH), one image at a
// time, with the band holding the input rows those outputs read.
template <typename T, typename F>
void over_bands(const T* x, Band& band, int64_t H, int64_t OH, const Geometry2d& g, int64_t begin, int64_t end, F f) {
  for (int64_t r = begin; r < end;) {
    const int64_t n = r / OH, oh0 = r % OH, stop = std::min(end, (n + 1) * OH), oh1 = oh0 + stop - r;
    band.fill(x + n * H * band.W * band.C, H, oh0 * g.sh - g.ph, (oh1 - 1 - oh0) * g.sh + g.dh * (g.kh - 1) + 1);
    f(n, oh0, oh1);
    r = stop;
  }
}

// NHWC: per output pixel and block of kLanes channels, kLanes running sums in a register over every tap
// (four pixels side by side), read from the band; the filters [kh][kw][C].
template <typename T>
void forward_nhwc(const T* x, const float* w, const float* bias, T* y, int64_t N, int64_t C, int64_t H, int64_t W,
                  int64_t OH, int64_t OW, const Geometry2d& g) {
  const int64_t taps = g.kh * g.kw, Cp = whole_lanes(C), rows = (OH - 1) * g.sh + g.dh * (g.kh - 1) + 1;
  const auto [bottom, right] = far_padding(H, W, OH, OW, g);
  const std::vector<float> filter = padded_taps(w, taps, C), start = padded_taps(bias, 1, C);
  at::parallel_for(0, N * OH, 1, [&](int64_t begin, int64_t end) {
    Band band(rows, W, C, g.pw, right);
    std::vector<int64_t> offsets(taps);
    for (int64_t t = 0; t < taps; ++t) offsets[t] = band.offset(t / g.kw * g.dh, t % g.kw * g.dw);
    const int64_t pixel = g.sw * Cp;  // between the taps (0, 0) of neighbouring outputs
    over_bands(x, band, H, OH, g, begin, end, [&](int64_t n, int64_t oh0, int64_t oh1) {
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const float* first = band.values.data() + band.offset((oh - oh0) * g.sh, 0);
        T* out = y + (n * OH + oh) * OW * C;
        for (int64_t c0 = 0; c0 < Cp; c0 += kLanes) {
          const int64_t lanes = std::min(kLanes, C - c0);
          int64_t ow = 0;
          for (; ow + kChains <= OW; ow += kChains) {
            // four named sums, not an array: GCC kept an array of them on the stack (a store per tap)
            Lanes a0 = load(start.data() + c0), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t t = 0; t < taps; ++t) {
              const Lanes tap = load(filter.data() + t * Cp + c0);
              const float* p = first + ow * pixel + offsets[t] + c0;
              a0 += load(p) * tap;
              a1 += load(p + pixel) * tap;
              a2 += load(p + 2 * pixel) * tap;
              a3 += load(p + 3 * pixel) * tap;
            }
            store_first(out + ow * C + c0, a0, lanes);
            store_first(out + (ow + 1) * C + c0, a1, lanes);
            store_first(out + (ow + 2) * C + c0, a2, lanes);
            store_first(out + (ow + 3) * C + c0, a3, lanes);
          }
          for (; ow < OW; ++ow) {
            Lanes acc = load(start.data() + c0);
            for (int64_t t = 0; t < taps; ++t) {
              acc += load(first + ow * pixel + offsets[t] + c0) * load(filter.data() + t * Cp + c0);
            }
            store_first(out + ow * C + c0, acc, lanes);
          }
        }
      }
    });
  });
}

// ∂x, NHWC. Stride 1 (and d·(k − 1) ≥ p): the forward's correlation of ∂y padded by d·(k − 1) − p
// with the filters rotated by 180°. Otherwise per ∂x pixel, the (∂y pixel, tap) pairs that reach it
// summed in registers per block of kLanes channels, rounded once.
bool by_correlation(const Geometry2d& g) {
  return g.sh == 1 && g.sw == 1 && g.dh * (g.kh - 1) >= g.ph && g.dw * (g.kw - 1) >= g.pw;
}

Geometry2d rotated(const Geometry2d& g) {
  return {g.kh, g.kw, 1, 1, g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw, g.dh, g.dw};
}

// Filters [kh·kw][C] with the taps in reverse order.
std::vector<float> rotate(const std::vector<float>& w, int64_t C, int64_t taps) {
  std::vector<float> out(w.size());
  for (int64_t t = 0; t < taps; ++t) std::copy_n(w.begin() + t * C, C, out.begin() + (taps - 1 - t) * C);
  return out;
}

// One row out[k + sw·m] = from[k][m] (k < sw) of W values: the phases of a row put back together,
// the inverse of Plane::fill's split.
template <typename T>
void interleave(T* __restrict out, const float* const* from, int64_t sw, int64_t W) {
  if (sw == 1) return store(out, from[0], W);
  int64_t done = 0;  // a multiple of sw
#if __has_builtin(__builtin_shufflevector)
  if (sw == 2) {
    for (; done + 2 * kLanes <= W; done += 2 * kLanes) {
      const Lanes even = load(from[0] + done / 2), odd = load(from[1] + done / 2);
      store(out + done, __builtin_shufflevector(even, odd, CNNLAB_LOW_PAIRS));
      store(out + done + kLanes, __builtin_shufflevector(even, odd, CNNLAB_HIGH_PAIRS));
    }
  }
#endif
  for (int64_t k = 0; k < sw; ++k) {
    for (int64_t w = done + k, m = done / sw; w < W; w += sw, ++m) out[w] = static_cast<T>(from[k][m]);
  }
}

// NCHW: the padded ∂x by stride phases. Phase (a, b) at (r, c) is Σ over the taps (di, dj) of that
// phase of w · ∂y[r − ⌊di/sh⌋][c − ⌊dj/sw⌋]; with ∂y in a zero-bordered plane (⌊dh(kh − 1)/sh⌋ rows
// above, ⌊dw(kw − 1)/sw⌋ columns left, Wg = Wq + left wide), position q = r·Wg + c reads it at q +
// (top − ⌊di/sh⌋)·Wg + left − ⌊dj/sw⌋: the forward's correlation, once per phase, no scatter.
template <typename T>
void input_grad_nchw(const T* dy, const float* w, const float* /* zeros */, T* dx, int64_t N, int64_t C, int64_t H,
                     int64_t W, int64_t OH,
                     int64_t OW, const Geometry2d& g) {
  const auto [bottom, right] = far_padding(H, W, OH, OW, g);
  const int64_t Hq = (H + g.ph + bottom + g.sh - 1) / g.sh, Wq = (W + g.pw + right + g.sw - 1) / g.sw;  // Plane's
  const int64_t top = g.dh * (g.kh - 1) / g.sh, left = g.dw * (g.kw - 1) / g.sw;
  const int64_t taps = g.kh * g.kw, Wg = Wq + left, phases = g.sh * g.sw, size = Hq * Wg;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> phase_taps(phases);  // [a·sw + b]: (tap, offset in ∂y)
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t di = t / g.kw * g.dh, dj = t % g.kw * g.dw;
    phase_taps[di % g.sh * g.sw + dj % g.sw].emplace_back(t, (top - di / g.sh) * Wg + left - dj / g.sw);
  }
  std::vector<int64_t> column_source(g.sw);  // [k]: ∂x column k's phase value; column k + sw·m at + m
  for (int64_t k = 0; k < g.sw; ++k) column_source[k] = (g.pw + k) % g.sw * size + (g.pw + k) / g.sw;
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    Plane grad(OH, OW, top, Hq - OH, left, Wq - OW, 2 * kChains * kLanes + left);
    std::vector<float> sums(phases * size + kChains * kLanes), weights(taps);
    std::vector<int64_t> offsets(taps);
    std::vector<const float*> columns(g.sw);
    for (int64_t p = begin; p < end; ++p) {
      grad.fill(dy + p * OH * OW);
      const float* filter = w + p % C * taps;
      for (int64_t ab = 0; ab < phases; ++ab) {  // in order: each run's last block spills into the next phase
        const int64_t count = phase_taps[ab].size();
        for (int64_t k = 0; k < count; ++k) {
          weights[k] = filter[phase_taps[ab][k].first];
          offsets[k] = phase_taps[ab][k].second;
        }
        correlate_run(grad.values.data(), offsets.data(), weights.data(), count, sums.data() + ab * size, size);
      }
      int64_t phase = g.ph % g.sh, row = g.ph / g.sh;  // of ∂x row h (+ ph)
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t k = 0; k < g.sw; ++k) columns[k] = sums.data() + phase * g.sw * size + row * Wg + column_source[k];
        interleave(dx + (p * H + h) * W, columns.data(), g.sw, W);
        if (++phase == g.sh) phase = 0, ++row;
      }
    }
  });
}

template <typename T>
void input_grad_nhwc(const T* dy, const float* w, const float* zeros, T* dx, int64_t N, int64_t C, int64_t H,
                     int64_t W, int64_t OH,
                     int64_t OW, const Geometry2d& g) {
  if (by_correlation(g)) {
    const std::vector<float> taps(w, w + C * g.kh * g.kw);
    forward_nhwc(dy, rotate(taps, C, g.kh * g.kw).data(), zeros, dx, N, C, OH, OW, H, W, rotated(g));
    return;
  }
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> grads(g.kh * g.kw);
    std::vector<const float*> taps(g.kh * g.kw);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / H, ih = r % H;
      for (int64_t iw = 0; iw < W; ++iw) {
        int64_t count = 0;  // the (∂y pixel, filter tap) pairs that reach (ih, iw)
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t rows = ih + g.ph - i * g.dh;  // = oh·sh
          if (rows < 0 || rows % g.sh || rows / g.sh >= OH) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t cols = iw + g.pw - j * g.dw;
            if (cols < 0 || cols % g.sw || cols / g.sw >= OW) continue;
            grads[count] = dy + ((n * OH + rows / g.sh) * OW + cols / g.sw) * C;
            taps[count++] = w + (i * g.kw + j) * C;
          }
        }
        T* out = dx + (r * W + iw) * C;
        int64_t c0 = 0;
        for (; c0 + kLanes <= C; c0 += kLanes) {
          Lanes acc = {};
          for (int64_t k = 0; k < count; ++k) acc += load(grads[k] + c0) * load(taps[k] + c0);
          store(out + c0, acc);
        }
        for (; c0 < C; ++c0) {  // the last channels, one at a time
          float acc = 0.0f;
          for (int64_t k = 0; k < count; ++k) acc += wide(grads[k][c0]) * taps[k][c0];
          out[c0] = static_cast<T>(acc);
        }
      }
    }
  });
}

// ∂w[c, i, j] = Σ_{n, oh, ow} ∂y[n, c, oh, ow] · x[n, c, ih, iw]. NCHW: one channel per task, its
// planes in turn (in stride phases, as the forward's); ∂y laid out on the output positions q = oh·Wq + ow
// (zero at the dropped ones), each
// tap a dot product over them, kLanes wide in a register. NHWC: per task over rows of the
// batch, per block of kLanes channels, the running sums of up to 9 taps in registers across a row.
template <typename T>
at::Tensor weight_grad_nchw(const T* x, const T* dy, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                            int64_t OW, const Geometry2d& g) {
  const int64_t taps = g.kh * g.kw;
  const auto [bottom, right] = far_padding(H, W, OH, OW, g);
  at::Tensor out = at::empty({C, 1, g.kh, g.kw}, at::kFloat);
  float* op = out.data_ptr<float>();
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    Plane plane(H, W, g.ph, bottom, g.pw, right, 2 * kChains * kLanes + g.dw * (g.kw - 1), g.sh, g.sw);
    const int64_t Wq = plane.Wq;
    const int64_t positions = (OH * Wq + kChains * kLanes - 1) / (kChains * kLanes) * kChains * kLanes;
    std::vector<float> grad(positions, 0.0f);  // ∂y at the output positions
    std::vector<int64_t> offsets(taps);
    for (int64_t t = 0; t < taps; ++t) offsets[t] = plane.offset(t / g.kw * g.dh, t % g.kw * g.dw);
    std::vector<Lanes> sums(taps);  // per tap, 16 lanes summed across the channel's planes
    for (int64_t c = begin; c < end; ++c) {
      std::fill(sums.begin(), sums.end(), Lanes{});
      for (int64_t n = 0; n < N; ++n) {
        plane.fill(x + (n * C + c) * H * W);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const T* __restrict src = dy + ((n * C + c) * OH + oh) * OW;
          float* __restrict dst = grad.data() + oh * Wq;
          for (int64_t ow = 0; ow < OW; ++ow) dst[ow] = wide(src[ow]);
        }
        const float* src = plane.values.data();
        for (int64_t t = 0; t < taps; ++t) {
          Lanes acc[kChains] = {};
          const float* in = src + offsets[t];
          for (int64_t q = 0; q < positions; q += kChains * kLanes) {
            for (int u = 0; u < kChains; ++u) acc[u] += load(grad.data() + q + u * kLanes) * load(in + q + u * kLanes);
          }
          sums[t] += (acc[0] + acc[1]) + (acc[2] + acc[3]);
        }
      }
      for (int64_t t = 0; t < taps; ++t) {
        float sum = 0.0f;
        for (int64_t k = 0; k < kLanes; ++k) sum += sums[t][k];
        op[c * taps + t] = sum;
      }
    }
  });
  return out;
}

template <typename T>
at::Tensor weight_grad_nhwc(const T* x, const T* dy, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                            int64_t OW, const Geometry2d& g) {
  constexpr int64_t kTaps = 9;  // taps whose sums stay in registers at once
  const int64_t taps = g.kh * g.kw, Cp = whole_lanes(C), rows = (OH - 1) * g.sh + g.dh * (g.kh - 1) + 1;
  const auto [bottom, right] = far_padding(H, W, OH, OW, g);
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), N * OH), 1);
  at::Tensor partial = at::zeros({tasks, taps, Cp}, at::kFloat);
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, tasks, 1, [&](int64_t task_begin, int64_t task_end) {
    Band band(rows, W, C, g.pw, right);
    std::vector<int64_t> offsets(taps);
    for (int64_t t = 0; t < taps; ++t) offsets[t] = band.offset(t / g.kw * g.dh, t % g.kw * g.dw);
    std::vector<float> grad(OW * Cp, 0.0f);  // one row of ∂y, channels padded as the band's
    const int64_t pixel = g.sw * Cp;
    for (int64_t task = task_begin; task < task_end; ++task) {
      float* acc = pp + task * taps * Cp;
      const int64_t begin = N * OH * task / tasks, end = N * OH * (task + 1) / tasks;
      over_bands(x, band, H, OH, g, begin, end, [&](int64_t n, int64_t oh0, int64_t oh1) {
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          for (int64_t ow = 0; ow < OW; ++ow) widen(grad.data() + ow * Cp, dy + ((n * OH + oh) * OW + ow) * C, C);
          const float* first = band.values.data() + band.offset((oh - oh0) * g.sh, 0);
          for (int64_t c0 = 0; c0 < Cp; c0 += kLanes) {
            for (int64_t t0 = 0; t0 < taps; t0 += kTaps) {
              Lanes sums[kTaps] = {};  // constant indices below: the compiler keeps them in registers
              for (int64_t ow = 0; ow < OW; ++ow) {
                const Lanes gv = load(grad.data() + ow * Cp + c0);
                const float* pixel_first = first + ow * pixel + c0;
                for (int u = 0; u < kTaps; ++u) {
                  if (t0 + u < taps) sums[u] += gv * load(pixel_first + offsets[t0 + u]);
                }
              }
              for (int64_t u = 0; u < kTaps && t0 + u < taps; ++u) {
                float* sum = acc + (t0 + u) * Cp + c0;
                store(sum, load(sum) + sums[u]);
              }
            }
          }
        }
      });
    }
  });
  return partial.sum(0).narrow(1, 0, C).t().reshape({C, 1, g.kh, g.kw});  // [kh·kw][C] → (C, 1, kh, kw)
}

template <typename T>
T* values(at::Tensor& t) {
  if constexpr (std::is_same_v<T, float>) {
    return t.data_ptr<float>();
  } else {
    return t.data_ptr<at::BFloat16>();
  }
}

template <typename T>
const T* values(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, float>) {
    return t.const_data_ptr<float>();
  } else {
    return t.const_data_ptr<at::BFloat16>();
  }
}

// f(T()) with T the element type of `t`: float or at::BFloat16.
template <typename F>
void dispatch(const at::Tensor& t, F f) {
  if (t.scalar_type() == at::kFloat) {
    f(float());
  } else {
    f(at::BFloat16());
  }
}

void check(const at::Tensor& a, const at::Tensor& b, const char* op) {
  TORCH_CHECK(a.dim() == 4 && a.scalar_type() == b.scalar_type() &&
                  (a.scalar_type() == at::kFloat || a.scalar_type() == at::kBFloat16),
              op, ": 4-D float32 or bfloat16 tensors of one dtype");
}

// `kernel` (forward_* or input_grad_*, chosen by the layout of `source`) from `source` (N, C, SH, SW)
// into a new (N, C, *out_size) in the same layout and dtype.
template <typename Nhwc, typename Nchw>
at::Tensor correlate(const at::Tensor& source, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     const Geometry2d& g, int64_t DH, int64_t DW, bool input_grad, Nhwc nhwc_kernel, Nchw nchw_kernel) {
  const int64_t N = source.size(0), C = source.size(1), SH = source.size(2), SW = source.size(3);
  const bool nhwc = channels_last(source);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor src = source.contiguous(format);
  at::Tensor dst = at::empty({N, C, DH, DW}, src.options().memory_format(format));
  const std::vector<float> w = filters(weight, nhwc);
  std::vector<float> start(C, 0.0f);  // every output's first value: the bias (zeros for ∂x)
  if (bias.has_value()) {
    const at::Tensor b = bias->to(at::kFloat).contiguous();
    std::copy_n(b.const_data_ptr<float>(), C, start.begin());
  }
  // the kernels take (input sizes, output sizes) of the convolution: ∂x's are the destination's
  using Sizes = std::array<int64_t, 4>;
  const auto [H, W, OH, OW] = input_grad ? Sizes{DH, DW, SH, SW} : Sizes{SH, SW, DH, DW};
  dispatch(src, [&](auto zero) {
    using T = decltype(zero);
    (nhwc ? nhwc_kernel(T()) : nchw_kernel(T()))(values<T>(src), w.data(), start.data(), values<T>(dst), N, C, H, W,
                                                  OH, OW, g);
  });
  return dst;
}

// (N, C, H, W) in either layout, filters (C, 1, kh, kw), an optional bias (C) of any floating dtype,
// added to the float32 sums before their one rounding → (N, C, OH, OW) in the input's layout.
at::Tensor depthwise(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  check(input, weight, "cnnlab_native::depthwise");
  TORCH_CHECK(!bias.has_value() || (bias->dim() == 1 && bias->size(0) == input.size(1)),
              "cnnlab_native::depthwise: a bias of one value per channel");
  const Geometry2d g = geometry(weight.size(2), weight.size(3), stride, padding, dilation);
  const int64_t OH = output_size(input.size(2), g.kh, g.sh, g.ph, g.dh);
  const int64_t OW = output_size(input.size(3), g.kw, g.sw, g.pw, g.dw);
  return correlate(
      input, weight, bias, g, OH, OW, false, [](auto zero) { return &forward_nhwc<decltype(zero)>; },
      [](auto zero) { return &forward_nchw<decltype(zero)>; });
}

at::Tensor depthwise_input_grad(const at::Tensor& grad, const at::Tensor& weight, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, at::IntArrayRef input_size) {
  check(grad, weight, "cnnlab_native::depthwise_input_grad");
  const Geometry2d g = geometry(weight.size(2), weight.size(3), stride, padding, dilation);
  return correlate(
      grad, weight, std::nullopt, g, input_size[0], input_size[1], true,
      [](auto zero) { return &input_grad_nhwc<decltype(zero)>; },
      [](auto zero) { return &input_grad_nchw<decltype(zero)>; });
}

// ∂w (C, 1, kh, kw) in the input's dtype; the layout is the input's (∂y follows it).
at::Tensor depthwise_weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef kernel,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  check(input, grad, "cnnlab_native::depthwise_weight_grad");
  const Geometry2d g = geometry(kernel[0], kernel[1], stride, padding, dilation);
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t OH = grad.size(2), OW = grad.size(3);
  const bool nhwc = channels_last(input);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor x = input.contiguous(format), dy = grad.contiguous(format);
  at::Tensor dw;
  dispatch(x, [&](auto zero) {
    using T = decltype(zero);
    dw = (nhwc ? weight_grad_nhwc<T> : weight_grad_nchw<T>)(values<T>(x), values<T>(dy), N, C, H, W, OH, OW, g);
  });
  return dw.to(input.scalar_type()).contiguous();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnlab_native, m) {
  m.def("depthwise(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation)"
        " -> Tensor");
  m.def("depthwise_input_grad(Tensor grad, Tensor weight, int[2] stride, int[2] padding, int[2] dilation,"
        " int[2] input_size) -> Tensor");
  m.def("depthwise_weight_grad(Tensor input, Tensor grad, int[2] kernel, int[2] stride, int[2] padding,"
        " int[2] dilation) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnlab_native, CPU, m) {
  m.impl("depthwise", &depthwise);
  m.impl("depthwise_input_grad", &depthwise_input_grad);
  m.impl("depthwise_weight_grad", &depthwise_weight_grad);
}

}  // namespace cnnlab
