// Max pooling over 2-D windows, forward (values and torch's flat indices) and backward (the
// gradient scattered to those indices), for contiguous (NCHW) and channels-last (NHWC) input.
//
// torch's rule, kept exactly: a window starts at -inf with the index of its first in-bounds tap;
// taps are visited in row-major order and a tap wins when it is greater than the running maximum
// or NaN (so the last NaN wins); padding is never a tap.
//
// Blocking: NCHW runs one (n, c) plane per task, the window loop innermost; NHWC runs one output
// row (n, oh) per task and keeps a row of C running maxima, so each tap is one contiguous pass
// over C channels that the compiler vectorises (benchmarks/layers.py: "max 2×2", "max 3×3/2").

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

namespace cnnlab {
namespace {

struct Window {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

// First in-bounds tap of a window starting at `start` (may be negative), and its end.
inline void bounds(int64_t start, int64_t kernel, int64_t dilation, int64_t size, int64_t& first, int64_t& end) {
  first = start;
  while (first < 0) first += dilation;
  end = std::min(start + (kernel - 1) * dilation + 1, size);
}

template <typename T>
void forward_nchw(const T* in, T* out, int64_t* index, int64_t planes, int64_t H, int64_t W, int64_t OH,
                  int64_t OW, const Window& w) {
  using acc_t = at::opmath_type<T>;
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* x = in + p * H * W;
      for (int64_t oh = 0; oh < OH; ++oh) {
        int64_t ih0, ih1;
        bounds(oh * w.sh - w.ph, w.kh, w.dh, H, ih0, ih1);
        for (int64_t ow = 0; ow < OW; ++ow) {
          int64_t iw0, iw1;
          bounds(ow * w.sw - w.pw, w.kw, w.dw, W, iw0, iw1);
          acc_t best = -std::numeric_limits<acc_t>::infinity();
          int64_t arg = ih0 * W + iw0;
          for (int64_t ih = ih0; ih < ih1; ih += w.dh) {
            for (int64_t iw = iw0; iw < iw1; iw += w.dw) {
              const acc_t v = static_cast<acc_t>(x[ih * W + iw]);
              if (v > best || std::isnan(v)) {
                best = v;
                arg = ih * W + iw;
              }
            }
          }
          out[(p * OH + oh) * OW + ow] = static_cast<T>(best);
          index[(p * OH + oh) * OW + ow] = arg;
        }
      }
    }
  });
}

template <typename T>
void forward_nhwc(const T* in, T* out, int64_t* index, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                  int64_t OW, const Window& w) {
  using acc_t = at::opmath_type<T>;
  at::parallel_for(0, N * OH, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> best(C);
    std::vector<int64_t> arg(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / OH, oh = row % OH;
      const T* x = in + n * H * W * C;
      int64_t ih0, ih1;
      bounds(oh * w.sh - w.ph, w.kh, w.dh, H, ih0, ih1);
      for (int64_t ow = 0; ow < OW; ++ow) {
        int64_t iw0, iw1;
        bounds(ow * w.sw - w.pw, w.kw, w.dw, W, iw0, iw1);
        const int64_t first = ih0 * W + iw0;
        for (int64_t c = 0; c < C; ++c) {
          best[c] = -std::numeric_limits<acc_t>::infinity();
          arg[c] = first;
        }
        for (int64_t ih = ih0; ih < ih1; ih += w.dh) {
          for (int64_t iw = iw0; iw < iw1; iw += w.dw) {
            const int64_t tap = ih * W + iw;
            const T* xt = x + tap * C;
            acc_t* b = best.data();
            int64_t* a = arg.data();
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) {
              const acc_t v = static_cast<acc_t>(xt[c]);
              const bool take = v > b[c] || v != v;
              b[c] = take ? v : b[c];
              a[c] = take ? tap : a[c];
            }
          }
        }
        T* y = out + ((n * OH + oh) * OW + ow) * C;
        int64_t* i = index + ((n * OH + oh) * OW + ow) * C;
        for (int64_t c = 0; c < C; ++c) {
          y[c] = static_cast<T>(best[c]);
          i[c] = arg[c];
        }
      }
    }
  });
}

bool channels_last(const at::Tensor& t) {
  return t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous();
}

std::tuple<at::Tensor, at::Tensor> window_max2d(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                              at::IntArrayRef output_size) {
  TORCH_CHECK(input.dim() == 4 && input.device().is_cpu(), "cnnlab_native::window_max2d: a 4-D CPU tensor");
  const bool nhwc = channels_last(input);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor x = input.contiguous(format);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = output_size[0], OW = output_size[1];
  const Window w{kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]};
  at::Tensor out = at::empty({N, C, OH, OW}, x.options(), format);
  at::Tensor index = at::empty({N, C, OH, OW}, x.options().dtype(at::kLong), format);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "cnnlab_native::window_max2d", [&] {
    if (nhwc) {
      forward_nhwc(x.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), N, C, H, W,
                   OH, OW, w);
    } else {
      forward_nchw(x.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), N * C, H, W,
                   OH, OW, w);
    }
  });
  return {out, index};
}

// ∂x[n, c, index[n, c, o]] += ∂y[n, c, o]; sums over overlapping windows in float32 for half types.
at::Tensor window_max2d_backward(const at::Tensor& grad, const at::Tensor& index, at::IntArrayRef input_size) {
  const bool nhwc = channels_last(grad) || channels_last(index);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor g = grad.contiguous(format), i = index.contiguous(format);
  const int64_t N = g.size(0), C = g.size(1), OHW = g.size(2) * g.size(3), HW = input_size[0] * input_size[1];
  const auto acc_type = at::toOpMathType(g.scalar_type());
  at::Tensor sums = at::empty({N, C, input_size[0], input_size[1]}, g.options().dtype(acc_type), format).zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "cnnlab_native::window_max2d_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* go = g.const_data_ptr<scalar_t>();
    const int64_t* ix = i.const_data_ptr<int64_t>();
    acc_t* gi = sums.data_ptr<acc_t>();
    if (nhwc) {
      at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
        for (int64_t n = begin; n < end; ++n) {
          for (int64_t o = 0; o < OHW; ++o) {
            const int64_t base = (n * OHW + o) * C;
            for (int64_t c = 0; c < C; ++c) {
              gi[(n * HW + ix[base + c]) * C + c] += static_cast<acc_t>(go[base + c]);
            }
          }
        }
      });
    } else {
      at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          for (int64_t o = 0; o < OHW; ++o) gi[p * HW + ix[p * OHW + o]] += static_cast<acc_t>(go[p * OHW + o]);
        }
      });
    }
  });
  return sums.scalar_type() == g.scalar_type() ? sums : sums.to(g.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnlab_native, m) {
  m.def("window_max2d(Tensor input, int[2] kernel, int[2] stride, int[2] padding, int[2] dilation, int[2] output_size)"
        " -> (Tensor, Tensor)");
  m.def("window_max2d_backward(Tensor grad, Tensor index, int[2] input_size) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnlab_native, CPU, m) {
  m.impl("window_max2d", &window_max2d);
  m.impl("window_max2d_backward", &window_max2d_backward);
}

}  // namespace cnnlab
