// cnnlab's tile kernels (correlate_tiles.cpp): channels-last 2-D direct convolution of float32 and
// bfloat16 data on an AVX-512 microkernel, for CPUs with AVX512-BF16 (correlate.cpp checks).
#pragma once

#include <ATen/ATen.h>

namespace cnnlab {
namespace tiles {

struct Geometry2d {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

// Y (N, OH, OW, O) from X (N, H, W, C) and W (O, C/G, kh, kw); float32 or bfloat16 (both alike).
at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                   int64_t OH, int64_t OW);
// ∂X (N, H, W, C) from ∂Y (N, OH, OW, O).
at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                      int64_t H, int64_t W);
// ∂W (O, C/G, kh, kw) from X and ∂Y.
at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                       const Geometry2d& g, int64_t groups);

}  // namespace tiles
}  // namespace cnnlab
