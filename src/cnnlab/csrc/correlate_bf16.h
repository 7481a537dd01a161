// cnnlab's bfloat16 direct convolution (correlate_bf16.cpp): channels-last 2-D, on CPUs with AVX512-BF16.
#pragma once

#include <ATen/ATen.h>

namespace cnnlab {
namespace bf16 {

struct Geometry2d {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

bool supported();  // the CPU has AVX512-BF16 (and the build is x86-64)

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                   int64_t OH, int64_t OW);
at::Tensor input_grad(const at::Tensor& grad, const at::Tensor& weight, const Geometry2d& g, int64_t groups,
                      int64_t H, int64_t W);
at::Tensor weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                       const Geometry2d& g, int64_t groups);

}  // namespace bf16
}  // namespace cnnlab
