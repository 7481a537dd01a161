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
// - NHWC: over the channels of a pixel (a row of C running sums per output pixel, each tap one
//   pass over C values and C filter taps, the filters stored [kh][kw][C]);
// - NCHW: over the positions of an output row (each tap one pass over the row's positions inside
//   the image, a tap's filter value broadcast), one (n, c) plane per task.
// The input gradient scatters each output's gradient back through the taps, one image (NHWC) or
// plane (NCHW) per task so that no two tasks add into the same values; the weight gradient sums
// per task (NHWC: rows of the batch; NCHW: channels) in float32.

#include "correlate_tiles.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdint>
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

// The outputs [lo, hi) of a row whose tap at `offset` (= tap·dilation − padding) reads inside
// [0, size): lo·stride + offset ≥ 0 and (hi − 1)·stride + offset ≤ size − 1.
std::pair<int64_t, int64_t> inside(int64_t offset, int64_t stride, int64_t size, int64_t out) {
  const int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t hi = size - 1 - offset < 0 ? 0 : std::min(out, (size - 1 - offset) / stride + 1);
  return {lo, std::max(lo, hi)};
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

// One plane with zero borders in float32, [Hp][Wp] (+ slack): the image at (top, left). The
// borders stay zero from the allocation on; each plane writes only its interior.
struct Plane {
  int64_t H, W, top, left, Hp, Wp;
  std::vector<float> values;
  Plane(int64_t H, int64_t W, int64_t top, int64_t bottom, int64_t left, int64_t right, int64_t tail = 0)
      : H(H), W(W), top(top), left(left), Hp(H + top + bottom), Wp(W + left + right),
        values(Hp * Wp + tail, 0.0f) {}
  template <typename T>
  void fill(const T* __restrict image) {
    for (int64_t h = 0; h < H; ++h) {
      float* __restrict row = values.data() + (h + top) * Wp + left;
      for (int64_t w = 0; w < W; ++w) row[w] = wide(image[h * W + w]);
    }
  }
};

template <typename T>
void store(T* __restrict out, const float* __restrict in, int64_t n) {
  for (int64_t k = 0; k < n; ++k) out[k] = static_cast<T>(in[k]);
}

constexpr int64_t kLanes = 16;  // values per running-sum block: one AVX-512 register of float32 (two AVX2)
constexpr int kChains = 4;      // blocks summed side by side: a multiply-add's latency is four of its issue slots

// 16 float32 lanes as a GCC vector: the running sums stay in registers on AVX-512 and AVX2 alike.
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

inline void store(at::BFloat16* p, Lanes v) {  // rounded to nearest even, NaN kept NaN (as c10::BFloat16)
  Words w;
  std::memcpy(&w, &v, sizeof(w));
  const Words rounded = (w + 0x7FFFu + ((w >> 16) & 1u)) >> 16;
  const Words nan = (Words)(v != v);
  const Halves h = __builtin_convertvector((nan & 0x7FC0u) | (~nan & rounded), Halves);
  std::memcpy(p, &h, sizeof(h));
}

// NCHW: one padded plane per (n, c) (`source`: the input, or for a stride-1 input gradient ∂y
// padded the other way, with the filters rotated). With stride 1, output (oh, ow) sits at
// q = oh·Wp + ow and tap t reads q + offset_t, so 16 consecutive positions are 16 running sums in
// a register over every tap (the Wp − OW positions at the end of each row dropped); other
// strides copy each tap's strided row first.
template <typename T>
void correlate_planes(const T* x, const float* w, T* y, int64_t planes, int64_t C, int64_t H, int64_t W, int64_t OH,
                      int64_t OW, const Geometry2d& g) {
  const int64_t bottom = std::max<int64_t>(0, (OH - 1) * g.sh + g.dh * (g.kh - 1) + 1 - H - g.ph);
  const int64_t right = std::max<int64_t>(0, (OW - 1) * g.sw + g.dw * (g.kw - 1) + 1 - W - g.pw);
  const int64_t taps = g.kh * g.kw;
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    Plane plane(H, W, g.ph, bottom, g.pw, right, 2 * kChains * kLanes + g.dw * (g.kw - 1));  // + the last block's reads
    const int64_t Wp = plane.Wp;
    std::vector<int64_t> offsets(taps);
    for (int64_t t = 0; t < taps; ++t) offsets[t] = t / g.kw * g.dh * Wp + t % g.kw * g.dw;
    std::vector<float> sums(OH * Wp + kChains * kLanes), strided(OW);
    for (int64_t p = begin; p < end; ++p) {
      plane.fill(x + p * H * W);
      const float* taps_of = w + (p % C) * taps;
      const float* src = plane.values.data();
      if (g.sh == 1 && g.sw == 1) {
        for (int64_t q = 0; q < OH * Wp; q += kChains * kLanes) {
          Lanes acc[kChains] = {};
          for (int64_t t = 0; t < taps; ++t) {
            for (int u = 0; u < kChains; ++u) acc[u] += taps_of[t] * load(src + q + offsets[t] + u * kLanes);
          }
          for (int u = 0; u < kChains; ++u) store(sums.data() + q + u * kLanes, acc[u]);
        }
      } else {
        std::fill(sums.begin(), sums.end(), 0.0f);
        for (int64_t t = 0; t < taps; ++t) {
          for (int64_t oh = 0; oh < OH; ++oh) {
            const float* row = src + oh * g.sh * Wp + offsets[t];
            for (int64_t ow = 0; ow < OW; ++ow) strided[ow] = row[ow * g.sw];
            float* __restrict out = sums.data() + oh * Wp;
            for (int64_t ow = 0; ow < OW; ++ow) out[ow] += taps_of[t] * strided[ow];
          }
        }
      }
      for (int64_t oh = 0; oh < OH; ++oh) store(y + (p * OH + oh) * OW, sums.data() + oh * Wp, OW);
    }
  });
}

// The interior outputs [lo, hi) of one output row for one block of 16 channels of a 3×3 filter:
// its 9 filter vectors stay in registers, four pixels are summed side by side. `origin` is output
// 0's tap (0, 0) (at this block), pixels `pixel` values apart, C values per pixel.
template <typename T>
void interior_3x3(const T* origin, const float* w, T* out, int64_t C, const int64_t* offsets, int64_t pixel,
                  int64_t lo, int64_t hi) {
  Lanes taps[9];
  for (int t = 0; t < 9; ++t) taps[t] = load(w + t * C);
  int64_t ow = lo;
  for (; ow + kChains <= hi; ow += kChains) {
    Lanes acc[kChains] = {};
    for (int t = 0; t < 9; ++t) {
      for (int u = 0; u < kChains; ++u) acc[u] += load(origin + (ow + u) * pixel + offsets[t]) * taps[t];
    }
    for (int u = 0; u < kChains; ++u) store(out + (ow + u) * C, acc[u]);
  }
  for (; ow < hi; ++ow) {
    Lanes acc = {};
    for (int t = 0; t < 9; ++t) acc += load(origin + ow * pixel + offsets[t]) * taps[t];
    store(out + ow * C, acc);
  }
}

// The pixel of `image` (H, W, C) each tap reads for the output whose tap (0, 0) is at (ih0, iw0),
// or `zeros` (C values) where the tap reads padding: taps[kh·kw].
template <typename T>
void tap_pixels(const T* image, const T* zeros, int64_t ih0, int64_t iw0, int64_t H, int64_t W, int64_t C,
                const Geometry2d& g, const T** taps) {
  for (int64_t t = 0; t < g.kh * g.kw; ++t) {
    const int64_t ih = ih0 + t / g.kw * g.dh, iw = iw0 + t % g.kw * g.dw;
    taps[t] = ih >= 0 && ih < H && iw >= 0 && iw < W ? image + (ih * W + iw) * C : zeros;
  }
}

// NHWC: per output pixel and block of 16 channels, 16 running sums in a register over every tap;
// the filters [kh][kw][C]. A 3×3 filter's interior pixels (every tap inside) run row by row with
// the block's filters in registers (interior_3x3); the others read each tap's pixel from a table
// of pointers, a row of zeros standing for the padding.
template <typename T>
void correlate_pixels(const T* x, const float* w, T* y, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                      int64_t OW, const Geometry2d& g) {
  const int64_t taps = g.kh * g.kw;
  std::vector<int64_t> offsets(taps);  // from the input pixel of tap (0, 0)
  for (int64_t t = 0; t < taps; ++t) offsets[t] = (t / g.kw * g.dh * W + t % g.kw * g.dw) * C;
  const auto [col_lo, col_hi] = inside(-g.pw, g.sw, W - g.dw * (g.kw - 1), OW);  // outputs whose kw taps are inside
  const std::vector<T> zeros(C + kLanes, T(0));
  at::parallel_for(0, N * OH, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> source(taps);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / OH, oh = r % OH, ih0 = oh * g.sh - g.ph;
      const bool rows_inside = ih0 >= 0 && ih0 + g.dh * (g.kh - 1) < H;
      int64_t done = 0;  // channels of the interior pixels computed below
      if (rows_inside && taps == 9) {
        const T* origin = x + ((n * H + ih0) * W - g.pw) * C;  // the input of output 0's tap (0, 0)
        done = C / kLanes * kLanes;
        for (int64_t c0 = 0; c0 < done; c0 += kLanes) interior_3x3(origin + c0, w + c0, y + r * OW * C + c0, C,
                                                                   offsets.data(), g.sw * C, col_lo, col_hi);
      }
      for (int64_t ow = 0; ow < OW; ++ow) {  // the rest: each tap's input pixel, or zeros outside the image
        T* out = y + (r * OW + ow) * C;
        const int64_t iw0 = ow * g.sw - g.pw;
        const bool interior = rows_inside && ow >= col_lo && ow < col_hi;
        if (interior && done == C) continue;
        tap_pixels(x + n * H * W * C, zeros.data(), ih0, iw0, H, W, C, g, source.data());
        int64_t c0 = interior ? done : 0;
        for (; c0 + kLanes <= C; c0 += kLanes) {
          Lanes acc = {};
          for (int64_t t = 0; t < taps; ++t) acc += load(source[t] + c0) * load(w + t * C + c0);
          store(out + c0, acc);
        }
        for (; c0 < C; ++c0) {  // the last channels, one at a time
          float acc = 0.0f;
          for (int64_t t = 0; t < taps; ++t) acc += wide(source[t][c0]) * w[t * C + c0];
          out[c0] = static_cast<T>(acc);
        }
      }
    }
  });
}

template <typename T>
void forward_nchw(const T* x, const float* w, T* y, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                  int64_t OW, const Geometry2d& g) {
  correlate_planes(x, w, y, N * C, C, H, W, OH, OW, g);
}

template <typename T>
void forward_nhwc(const T* x, const float* w, T* y, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                  int64_t OW, const Geometry2d& g) {
  correlate_pixels(x, w, y, N, C, H, W, OH, OW, g);
}

// ∂x. Stride 1 (and d·(k − 1) ≥ p): the forward's correlation of ∂y padded by d·(k − 1) − p with
// the filters rotated by 180°. Other strides scatter every output's gradient back through each
// tap into float32 sums of one padded plane (NCHW) or one image (NHWC), rounded once; no two
// tasks write the same values.
bool by_correlation(const Geometry2d& g) {
  return g.sh == 1 && g.sw == 1 && g.dh * (g.kh - 1) >= g.ph && g.dw * (g.kw - 1) >= g.pw;
}

Geometry2d rotated(const Geometry2d& g) {
  return {g.kh, g.kw, 1, 1, g.dh * (g.kh - 1) - g.ph, g.dw * (g.kw - 1) - g.pw, g.dh, g.dw};
}

// Filters [C][kh·kw] (or [kh·kw][C]) with the taps in reverse order.
std::vector<float> rotate(const std::vector<float>& w, int64_t C, int64_t taps, bool by_tap) {
  std::vector<float> out(w.size());
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < taps; ++t) {
      if (by_tap) {
        out[(taps - 1 - t) * C + c] = w[t * C + c];
      } else {
        out[c * taps + taps - 1 - t] = w[c * taps + t];
      }
    }
  }
  return out;
}

template <typename T>
void input_grad_nchw(const T* dy, const float* w, T* dx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                     int64_t OW, const Geometry2d& g) {
  if (by_correlation(g)) {
    const std::vector<float> taps(w, w + C * g.kh * g.kw);
    correlate_planes(dy, rotate(taps, C, g.kh * g.kw, false).data(), dx, N * C, C, OH, OW, H, W, rotated(g));
    return;
  }
  const int64_t bottom = std::max<int64_t>(0, (OH - 1) * g.sh + g.dh * (g.kh - 1) + 1 - H - g.ph);
  const int64_t right = std::max<int64_t>(0, (OW - 1) * g.sw + g.dw * (g.kw - 1) + 1 - W - g.pw);
  at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
    Plane sums(H, W, g.ph, bottom, g.pw, right);
    const int64_t Wp = sums.Wp;
    std::vector<float> grad(OW);
    for (int64_t p = begin; p < end; ++p) {
      std::fill(sums.values.begin(), sums.values.end(), 0.0f);
      const float* taps = w + (p % C) * g.kh * g.kw;
      for (int64_t oh = 0; oh < OH; ++oh) {
        for (int64_t ow = 0; ow < OW; ++ow) grad[ow] = wide(dy[(p * OH + oh) * OW + ow]);
        for (int64_t i = 0; i < g.kh; ++i) {
          for (int64_t j = 0; j < g.kw; ++j) {
            float* dst = sums.values.data() + (oh * g.sh + i * g.dh) * Wp + j * g.dw;
            const float tap = taps[i * g.kw + j];
            for (int64_t ow = 0; ow < OW; ++ow) dst[ow * g.sw] += tap * grad[ow];
          }
        }
      }
      for (int64_t h = 0; h < H; ++h) store(dx + (p * H + h) * W, sums.values.data() + (h + g.ph) * Wp + g.pw, W);
    }
  });
}

template <typename T>
void input_grad_nhwc(const T* dy, const float* w, T* dx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                     int64_t OW, const Geometry2d& g) {
  if (by_correlation(g)) {
    const std::vector<float> taps(w, w + C * g.kh * g.kw);
    correlate_pixels(dy, rotate(taps, C, g.kh * g.kw, true).data(), dx, N, C, OH, OW, H, W, rotated(g));
    return;
  }
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> sums(H * W * C);
    for (int64_t n = begin; n < end; ++n) {
      std::fill(sums.begin(), sums.end(), 0.0f);
      for (int64_t oh = 0; oh < OH; ++oh) {
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t ow = 0; ow < OW; ++ow) {
            const T* __restrict grad = dy + ((n * OH + oh) * OW + ow) * C;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t iw = ow * g.sw - g.pw + j * g.dw;
              if (iw < 0 || iw >= W) continue;
              float* __restrict target = sums.data() + (ih * W + iw) * C;
              const float* __restrict tap = w + (i * g.kw + j) * C;
              for (int64_t c = 0; c < C; ++c) target[c] += wide(grad[c]) * tap[c];
            }
          }
        }
      }
      store(dx + n * H * W * C, sums.data(), H * W * C);
    }
  });
}

// ∂w[c, i, j] = Σ_{n, oh, ow} ∂y[n, c, oh, ow] · x[n, c, ih, iw]. NCHW: one channel per task, its
// padded planes in turn; ∂y laid out on the plane's positions (zero at the dropped ones), each
// tap a dot product over them, 16 lanes wide in a register. NHWC: per task over rows of the
// batch, per block of 16 channels, the running sums of up to 9 taps in registers across a row.
template <typename T>
at::Tensor weight_grad_nchw(const T* x, const T* dy, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                            int64_t OW, const Geometry2d& g) {
  const int64_t taps = g.kh * g.kw;
  const int64_t bottom = std::max<int64_t>(0, (OH - 1) * g.sh + g.dh * (g.kh - 1) + 1 - H - g.ph);
  const int64_t right = std::max<int64_t>(0, (OW - 1) * g.sw + g.dw * (g.kw - 1) + 1 - W - g.pw);
  at::Tensor out = at::empty({C, 1, g.kh, g.kw}, at::kFloat);
  float* op = out.data_ptr<float>();
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    Plane plane(H, W, g.ph, bottom, g.pw, right, 2 * kChains * kLanes + g.dw * (g.kw - 1));
    const int64_t Wp = plane.Wp, OHp = (OH - 1) * g.sh + 1;  // ∂y spread over the rows and columns it reads
    const int64_t positions = (OHp * Wp + kChains * kLanes - 1) / (kChains * kLanes) * kChains * kLanes;
    std::vector<float> grad(positions, 0.0f);  // ∂y at the plane positions of its windows' first taps
    std::vector<int64_t> offsets(taps);
    for (int64_t t = 0; t < taps; ++t) offsets[t] = t / g.kw * g.dh * Wp + t % g.kw * g.dw;
    std::vector<Lanes> sums(taps);  // per tap, 16 lanes summed across the channel's planes
    for (int64_t c = begin; c < end; ++c) {
      std::fill(sums.begin(), sums.end(), Lanes{});
      for (int64_t n = 0; n < N; ++n) {
        plane.fill(x + (n * C + c) * H * W);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const T* __restrict src = dy + ((n * C + c) * OH + oh) * OW;
          float* __restrict dst = grad.data() + oh * g.sh * Wp;
          if (g.sw == 1) {
            for (int64_t ow = 0; ow < OW; ++ow) dst[ow] = wide(src[ow]);
          } else {
            for (int64_t ow = 0; ow < OW; ++ow) dst[ow * g.sw] = wide(src[ow]);
          }
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
  const int64_t rows = N * OH, taps = g.kh * g.kw, whole = C / kLanes * kLanes;
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), rows), 1);
  const std::vector<T> zeros(C + kLanes, T(0));
  at::Tensor partial = at::zeros({tasks, taps, C}, at::kFloat);
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> source(OW * taps);  // per output of a row and tap: its input pixel, or zeros
    for (int64_t task = begin; task < end; ++task) {
      float* acc = pp + task * taps * C;
      for (int64_t r = rows * task / tasks; r < rows * (task + 1) / tasks; ++r) {
        const int64_t n = r / OH, ih0 = r % OH * g.sh - g.ph;
        for (int64_t ow = 0; ow < OW; ++ow) {
          tap_pixels(x + n * H * W * C, zeros.data(), ih0, ow * g.sw - g.pw, H, W, C, g, source.data() + ow * taps);
        }
        const T* grad_row = dy + r * OW * C;
        for (int64_t c0 = 0; c0 < whole; c0 += kLanes) {
          for (int64_t t0 = 0; t0 < taps; t0 += kTaps) {
            Lanes sums[kTaps] = {};  // constant indices below: the compiler keeps them in registers
            for (int64_t ow = 0; ow < OW; ++ow) {
              const Lanes gv = load(grad_row + ow * C + c0);
              const T* const* pixels = source.data() + ow * taps + t0;
              for (int u = 0; u < kTaps; ++u) {
                if (t0 + u < taps) sums[u] += gv * load(pixels[u] + c0);
              }
            }
            for (int64_t u = 0; u < kTaps && t0 + u < taps; ++u) {
              float* sum = acc + (t0 + u) * C + c0;
              store(sum, load(sum) + sums[u]);
            }
          }
        }
        for (int64_t c = whole; c < C; ++c) {  // the last channels, one at a time
          for (int64_t ow = 0; ow < OW; ++ow) {
            const float grad = wide(grad_row[ow * C + c]);
            for (int64_t t = 0; t < taps; ++t) acc[t * C + c] += grad * wide(source[ow * taps + t][c]);
          }
        }
      }
    }
  });
  return partial.sum(0).t().reshape({C, 1, g.kh, g.kw});  // [kh·kw][C] → (C, 1, kh, kw)
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
at::Tensor correlate(const at::Tensor& source, const at::Tensor& weight, const Geometry2d& g, int64_t DH, int64_t DW,
                     bool input_grad, Nhwc nhwc_kernel, Nchw nchw_kernel) {
  const int64_t N = source.size(0), C = source.size(1), SH = source.size(2), SW = source.size(3);
  const bool nhwc = channels_last(source);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor src = source.contiguous(format);
  at::Tensor dst = at::empty({N, C, DH, DW}, src.options().memory_format(format));
  const std::vector<float> w = filters(weight, nhwc);
  // the kernels take (input sizes, output sizes) of the convolution: ∂x's are the destination's
  using Sizes = std::array<int64_t, 4>;
  const auto [H, W, OH, OW] = input_grad ? Sizes{DH, DW, SH, SW} : Sizes{SH, SW, DH, DW};
  dispatch(src, [&](auto zero) {
    using T = decltype(zero);
    (nhwc ? nhwc_kernel(T()) : nchw_kernel(T()))(values<T>(src), w.data(), values<T>(dst), N, C, H, W, OH, OW, g);
  });
  return dst;
}

// (N, C, H, W) in either layout, filters (C, 1, kh, kw) → (N, C, OH, OW) in the input's layout.
at::Tensor depthwise(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                     at::IntArrayRef padding, at::IntArrayRef dilation) {
  check(input, weight, "cnnlab_native::depthwise");
  const Geometry2d g = geometry(weight.size(2), weight.size(3), stride, padding, dilation);
  const int64_t OH = output_size(input.size(2), g.kh, g.sh, g.ph, g.dh);
  const int64_t OW = output_size(input.size(3), g.kw, g.sw, g.pw, g.dw);
  return correlate(
      input, weight, g, OH, OW, false, [](auto zero) { return &forward_nhwc<decltype(zero)>; },
      [](auto zero) { return &forward_nchw<decltype(zero)>; });
}

at::Tensor depthwise_input_grad(const at::Tensor& grad, const at::Tensor& weight, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, at::IntArrayRef input_size) {
  check(grad, weight, "cnnlab_native::depthwise_input_grad");
  const Geometry2d g = geometry(weight.size(2), weight.size(3), stride, padding, dilation);
  return correlate(
      grad, weight, g, input_size[0], input_size[1], true, [](auto zero) { return &input_grad_nhwc<decltype(zero)>; },
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
  m.def("depthwise(Tensor input, Tensor weight, int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
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
