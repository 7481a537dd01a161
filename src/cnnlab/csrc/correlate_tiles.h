// cnnlab's tile kernels: channels-last 2-D direct convolution of float32 and bfloat16 data on an
// AVX-512 microkernel, for CPUs with AVX512-BF16 (correlate_tiles.cpp; of float32 data on its AVX2
// build, correlate_tiles_avx2.cpp, for CPUs with AVX2 and no AVX-512), and of bfloat16 data on AMX
// tiles, for CPUs with AMX-BF16 (correlate_amx.cpp); correlate.cpp checks which the CPU runs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace cnnlab {
namespace tiles {

struct Geometry2d {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

// A benchmark-only override of a blocking constant: the environment variable `name` if set (the
// knobs are listed in docs/benchmarks.md), else `fallback`.
inline int64_t knob(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoll(value) : fallback;
}

// The three products, one namespace per instruction set: avx512 (float32, and bfloat16 where the CPU
// has AVX512-BF16; correlate_tiles.cpp) and avx2 (AVX2 + FMA, float32 only; correlate_tiles_avx2.cpp).
#define CNNLAB_TILE_PRODUCTS                                                                                      \
  /* Y (N, OH, OW, O) from X (N, H, W, C) and W (O, C/G, kh, kw) */                                               \
  at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const Geometry2d& g, int64_t groups,      \
                     int64_t OH, int64_t OW);                                                                     \
  /* ∂X (N, H, W, C) from ∂Y (N, OH, OW, O) */                                                                    \
  at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const Geometry2d& g, int64_t groups,   \
                        int64_t H, int64_t W);                                                                    \
  /* ∂W (O, C/G, kh, kw) from X and ∂Y */                                                                         \
  at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,          \
                         const Geometry2d& g, int64_t groups);
namespace avx512 {
CNNLAB_TILE_PRODUCTS
}  // namespace avx512
namespace avx2 {
CNNLAB_TILE_PRODUCTS
}  // namespace avx2
#undef CNNLAB_TILE_PRODUCTS

// The tap tables of a gathered product along one axis, [k][D] (D destination positions, a source of
// S positions): forward, destination d reads source d·stride − pad + i·dilation through tap i;
// input gradient, destination d receives from source (d + pad − i·dilation)/stride where that is
// whole. −1 where the tap reads outside the source.
inline std::vector<int64_t> forward_taps(int64_t k, int64_t D, int64_t S, int64_t stride, int64_t pad,
                                         int64_t dilation) {
  std::vector<int64_t> table(k * D);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t d = 0; d < D; ++d) {
      const int64_t s = d * stride - pad + i * dilation;
      table[i * D + d] = s >= 0 && s < S ? s : -1;
    }
  }
  return table;
}

inline std::vector<int64_t> input_grad_taps(int64_t k, int64_t D, int64_t S, int64_t stride, int64_t pad,
                                            int64_t dilation) {
  std::vector<int64_t> table(k * D);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t d = 0; d < D; ++d) {
      const int64_t s = d + pad - i * dilation;
      table[i * D + d] = s >= 0 && s % stride == 0 && s / stride < S ? s / stride : -1;
    }
  }
  return table;
}

// Two rows of `count` bfloat16 values interleaved into 2·round_up(count, 16) values, zeros past
// `count`: dst[2c] = first[c], dst[2c + 1] = second[c] (the pairs that vdpbf16ps and AMX multiply).
void pair_rows(const uint16_t* first, const uint16_t* second, int64_t count, uint16_t* dst);

}  // namespace tiles

// The same three products of bfloat16 data on AMX tiles.
namespace amx {

// Whether the CPU has AMX-TILE and AMX-BF16 and the kernel lets this process use the tiles.
bool supported();
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const tiles::Geometry2d& g, int64_t groups,
                   int64_t OH, int64_t OW);
at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const tiles::Geometry2d& g, int64_t groups,
                      int64_t H, int64_t W);
at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                       const tiles::Geometry2d& g, int64_t groups);

}  // namespace amx
}  // namespace cnnlab
