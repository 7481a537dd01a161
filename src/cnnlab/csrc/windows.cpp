// Pooling over 2-D and 3-D windows, for contiguous and channels-last input: the window maximum
// (values and torch's flat indices; backward scatters the gradient to those indices) and the
// adaptive window mean (backward spreads each output's gradient over its window). The windows are
// max pooling's (kernel, stride, padding, dilation) or adaptive pooling's (output o of an axis of
// size I covers [floor(o·I/O), ceil((o+1)·I/O))); each axis gets a table of its windows' first
// in-bounds tap, end and step, and one loop nest serves both. A 2-D pool is a 3-D one of depth 1.
//
// torch's rule, kept exactly: a window starts at -inf with the index of its first in-bounds tap;
// taps are visited in row-major order and a tap wins when it is greater than the running maximum
// or NaN (so the last NaN wins); padding is never a tap.
//
// Blocking: contiguous input runs one (n, c) plane per task, the window loop innermost;
// channels-last input runs one output row (n, [od,] oh) per task and keeps a row of C running
// maxima, so each tap is one contiguous pass over C channels that the compiler vectorises
// (benchmarks/layers.py: "max 2×2", "max 3×3/2", "adaptive max", "max3d").

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

namespace cnnlab {
namespace {

// The windows along one axis: output o reads taps first[o], first[o] + step, … < end[o].
struct Axis {
  std::vector<int64_t> first, end;
  int64_t step = 1;
};

// Max pooling's windows: start o·stride − padding, `kernel` taps `dilation` apart, clipped to [0, size).
Axis pooled(int64_t size, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
  Axis axis{std::vector<int64_t>(out), std::vector<int64_t>(out), dilation};
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * stride - padding;
    int64_t first = start;
    while (first < 0) first += dilation;
    axis.first[o] = first;
    axis.end[o] = std::min(start + (kernel - 1) * dilation + 1, size);
  }
  return axis;
}

// Adaptive pooling's windows: [floor(o·size/out), ceil((o+1)·size/out)).
Axis adaptive(int64_t size, int64_t out) {
  Axis axis{std::vector<int64_t>(out), std::vector<int64_t>(out), 1};
  for (int64_t o = 0; o < out; ++o) {
    axis.first[o] = o * size / out;
    axis.end[o] = ((o + 1) * size + out - 1) / out;
  }
  return axis;
}

// Sizes of a (N, C, [D,] H, W) input and its output, depth 1 for 2-D, with the three axes' windows.
struct Pool {
  int64_t N, C, D, H, W, OD, OH, OW;
  Axis d, h, w;
};

// Whether the windows along an axis are one window slid by a fixed stride (no clipping by the edges):
// window o reads first[0] + o·stride + j·step for j < taps. Max pooling without padding along the
// axis, and adaptive pooling of a divisible size, are.
struct Slide {
  bool uniform;
  int64_t stride, taps;
};

Slide slide(const Axis& axis) {
  const int64_t out = axis.first.size(), span = axis.end[0] - axis.first[0];
  const int64_t stride = out > 1 ? axis.first[1] - axis.first[0] : 1;
  bool uniform = span > 0;
  for (int64_t o = 0; o < out && uniform; ++o) {
    uniform = axis.first[o] == axis.first[0] + o * stride && axis.end[o] - axis.first[o] == span;
  }
  return {uniform, stride, (span + axis.step - 1) / axis.step};
}

// x in its accumulation type; bfloat16 by its bits (the upper half of a float32), which the
// compiler vectorises.
template <typename T>
inline at::opmath_type<T> widen(T x) {
  return static_cast<at::opmath_type<T>>(x);
}
template <>
inline float widen(c10::BFloat16 x) {
  return c10::bit_cast<float>(static_cast<uint32_t>(x.x) << 16);
}

template <typename T>
void forward_planes(const T* in, T* out, int64_t* index, const Pool& p) {
  using acc_t = at::opmath_type<T>;
  const int64_t in_plane = p.D * p.H * p.W, out_plane = p.OD * p.OH * p.OW;
  const Slide along_w = slide(p.w);
  at::parallel_for(0, p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> best(p.OW), taps(p.OW);
    std::vector<int64_t> arg(p.OW);
    for (int64_t plane = begin; plane < end; ++plane) {
      const T* x = in + plane * in_plane;
      T* y = out + plane * out_plane;
      int64_t* ix = index + plane * out_plane;
      for (int64_t od = 0; od < p.OD; ++od) {
        for (int64_t oh = 0; oh < p.OH; ++oh, y += p.OW, ix += p.OW) {
          if (along_w.uniform) {  // a row of OW running maxima; each tap one strided pass the compiler vectorises
            const int64_t first = (p.d.first[od] * p.H + p.h.first[oh]) * p.W + p.w.first[0];
            for (int64_t ow = 0; ow < p.OW; ++ow) {
              best[ow] = -std::numeric_limits<acc_t>::infinity();
              arg[ow] = first + ow * along_w.stride;
            }
            for (int64_t id = p.d.first[od]; id < p.d.end[od]; id += p.d.step) {
              for (int64_t ih = p.h.first[oh]; ih < p.h.end[oh]; ih += p.h.step) {
                for (int64_t j = 0; j < along_w.taps; ++j) {  // taps in raster order, as the loop below
                  // (locals, not the captured structs: the compiler vectorises only loops over them)
                  const int64_t start = (id * p.H + ih) * p.W + p.w.first[0] + j * p.w.step, OW = p.OW;
                  const int64_t s = along_w.stride;
                  const T* __restrict row = x + start;
                  acc_t* __restrict b = best.data();
                  int64_t* __restrict a = arg.data();
                  acc_t* __restrict v = taps.data();
                  for (int64_t ow = 0; ow < OW; ++ow) v[ow] = widen(row[ow * s]);  // contiguous first
#pragma omp simd
                  for (int64_t ow = 0; ow < OW; ++ow) {
                    const bool take = v[ow] > b[ow] || v[ow] != v[ow];
                    b[ow] = take ? v[ow] : b[ow];
                    a[ow] = take ? start + ow * s : a[ow];
                  }
                }
              }
            }
            for (int64_t ow = 0; ow < p.OW; ++ow) {
              y[ow] = static_cast<T>(best[ow]);
              ix[ow] = arg[ow];
            }
            continue;
          }
          for (int64_t ow = 0; ow < p.OW; ++ow) {
            acc_t top = -std::numeric_limits<acc_t>::infinity();
            int64_t at = (p.d.first[od] * p.H + p.h.first[oh]) * p.W + p.w.first[ow];
            for (int64_t id = p.d.first[od]; id < p.d.end[od]; id += p.d.step) {
              for (int64_t ih = p.h.first[oh]; ih < p.h.end[oh]; ih += p.h.step) {
                for (int64_t iw = p.w.first[ow]; iw < p.w.end[ow]; iw += p.w.step) {
                  const int64_t tap = (id * p.H + ih) * p.W + iw;
                  const acc_t v = static_cast<acc_t>(x[tap]);
                  if (v > top || std::isnan(v)) {
                    top = v;
                    at = tap;
                  }
                }
              }
            }
            y[ow] = static_cast<T>(top);
            ix[ow] = at;
          }
        }
      }
    }
  });
}

template <typename T>
void forward_channels_last(const T* in, T* out, int64_t* index, const Pool& p) {
  using acc_t = at::opmath_type<T>;
  const int64_t C = p.C;
  at::parallel_for(0, p.N * p.OD * p.OH, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> best(C);
    std::vector<int64_t> arg(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / (p.OD * p.OH), od = row / p.OH % p.OD, oh = row % p.OH;
      const T* x = in + n * p.D * p.H * p.W * C;
      for (int64_t ow = 0; ow < p.OW; ++ow) {
        const int64_t first = (p.d.first[od] * p.H + p.h.first[oh]) * p.W + p.w.first[ow];
        acc_t* b = best.data();
        int64_t* a = arg.data();
        for (int64_t c = 0; c < C; ++c) {
          b[c] = -std::numeric_limits<acc_t>::infinity();
          a[c] = first;
        }
        for (int64_t id = p.d.first[od]; id < p.d.end[od]; id += p.d.step) {
          for (int64_t ih = p.h.first[oh]; ih < p.h.end[oh]; ih += p.h.step) {
            for (int64_t iw = p.w.first[ow]; iw < p.w.end[ow]; iw += p.w.step) {
              const int64_t tap = (id * p.H + ih) * p.W + iw;
              const T* xt = x + tap * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) {
                const acc_t v = widen(xt[c]);
                const bool take = v > b[c] || v != v;
                b[c] = take ? v : b[c];
                a[c] = take ? tap : a[c];
              }
            }
          }
        }
        T* y = out + (row * p.OW + ow) * C;
        int64_t* i = index + (row * p.OW + ow) * C;
        for (int64_t c = 0; c < C; ++c) {
          y[c] = static_cast<T>(b[c]);
          i[c] = a[c];
        }
      }
    }
  });
}

at::MemoryFormat channels_last_format(int64_t dim) {
  return dim == 5 ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast;
}

bool channels_last(const at::Tensor& t) {
  return (t.dim() == 4 || t.dim() == 5) && t.is_contiguous(channels_last_format(t.dim())) && !t.is_contiguous();
}

// {N, C, *spatial}: the shape of a pooling input or output.
std::vector<int64_t> batch_shape(int64_t N, int64_t C, at::IntArrayRef spatial) {
  std::vector<int64_t> shape{N, C};
  shape.insert(shape.end(), spatial.begin(), spatial.end());
  return shape;
}

// The spatial sizes of x, depth first and 1 for 2-D: {D, H, W}.
std::vector<int64_t> volume(at::IntArrayRef spatial) {
  std::vector<int64_t> sizes(3 - spatial.size(), 1);
  sizes.insert(sizes.end(), spatial.begin(), spatial.end());
  return sizes;
}

// Runs the forward on `input` (N, C, *S) with each axis' windows made by `axis(i, size, out)`.
template <typename MakeAxis>
std::tuple<at::Tensor, at::Tensor> window_max_with(const at::Tensor& input, at::IntArrayRef output_size,
                                                   MakeAxis axis) {
  const int64_t spatial = input.dim() - 2;
  TORCH_CHECK((spatial == 2 || spatial == 3) && input.device().is_cpu() && output_size.size() == size_t(spatial),
              "cnnlab_native::window_max: a 4-D or 5-D CPU tensor and an output size per spatial dim");
  const bool nhwc = channels_last(input);
  const auto format = nhwc ? channels_last_format(input.dim()) : at::MemoryFormat::Contiguous;
  const at::Tensor x = input.contiguous(format);
  const std::vector<int64_t> in = volume(x.sizes().slice(2)), out = volume(output_size);
  const int64_t skip = 3 - spatial;  // axes of size 1 that a 2-D pool adds: one window each, covering it
  Pool p{x.size(0), x.size(1), in[0], in[1], in[2], out[0], out[1], out[2],
         skip ? adaptive(1, 1) : axis(0, in[0], out[0]), axis(1 - skip, in[1], out[1]), axis(2 - skip, in[2], out[2])};
  const std::vector<int64_t> shape = batch_shape(p.N, p.C, output_size);
  at::Tensor values = at::empty(shape, x.options(), format);
  at::Tensor index = at::empty(shape, x.options().dtype(at::kLong), format);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "cnnlab_native::window_max", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    if (nhwc) {
      forward_channels_last(xp, values.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), p);
    } else {
      forward_planes(xp, values.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), p);
    }
  });
  return {values, index};
}

std::tuple<at::Tensor, at::Tensor> window_max(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                                              at::IntArrayRef padding, at::IntArrayRef dilation,
                                              at::IntArrayRef output_size) {
  return window_max_with(input, output_size, [&](size_t i, int64_t size, int64_t out) {
    return pooled(size, out, kernel[i], stride[i], padding[i], dilation[i]);
  });
}

std::tuple<at::Tensor, at::Tensor> adaptive_window_max(const at::Tensor& input, at::IntArrayRef output_size) {
  return window_max_with(input, output_size, [](size_t, int64_t size, int64_t out) { return adaptive(size, out); });
}

// ∂x[n, c, index[n, c, o]] += ∂y[n, c, o]. Where windows overlap, an input can collect several
// gradients: half types sum them in float32 (`overlapping`); otherwise each input gets at most one
// and the sum is exact in any type.
at::Tensor window_max_backward(const at::Tensor& grad, const at::Tensor& index, at::IntArrayRef input_size,
                               bool overlapping) {
  const bool nhwc = channels_last(grad) || channels_last(index);
  const auto format = nhwc ? channels_last_format(grad.dim()) : at::MemoryFormat::Contiguous;
  const at::Tensor g = grad.contiguous(format), i = index.contiguous(format);
  const int64_t N = g.size(0), C = g.size(1), outputs = g.numel() / std::max<int64_t>(N * C, 1);
  int64_t inputs = 1;
  for (const int64_t s : input_size) inputs *= s;
  const std::vector<int64_t> shape = batch_shape(N, C, input_size);
  const auto sum_type = overlapping ? at::toOpMathType(g.scalar_type()) : g.scalar_type();
  at::Tensor sums = at::empty(shape, g.options().dtype(sum_type), format).zero_();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "cnnlab_native::window_max_backward", [&] {
    const auto scatter = [&](auto* gi) {
      using sum_t = std::remove_pointer_t<decltype(gi)>;
      const scalar_t* go = g.const_data_ptr<scalar_t>();
      const int64_t* ix = i.const_data_ptr<int64_t>();
      if (nhwc) {
        at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
          for (int64_t n = begin; n < end; ++n) {
            for (int64_t o = 0; o < outputs; ++o) {
              const int64_t base = (n * outputs + o) * C;
              for (int64_t c = 0; c < C; ++c) {
                gi[(n * inputs + ix[base + c]) * C + c] += static_cast<sum_t>(go[base + c]);
              }
            }
          }
        });
      } else {
        at::parallel_for(0, N * C, 1, [&](int64_t begin, int64_t end) {
          for (int64_t p = begin; p < end; ++p) {
            for (int64_t o = 0; o < outputs; ++o) {
              gi[p * inputs + ix[p * outputs + o]] += static_cast<sum_t>(go[p * outputs + o]);
            }
          }
        });
      }
    };
    if (overlapping) {
      scatter(sums.data_ptr<at::opmath_type<scalar_t>>());
    } else {
      scatter(sums.data_ptr<scalar_t>());
    }
  });
  return sums.scalar_type() == g.scalar_type() ? sums : sums.to(g.scalar_type());
}

// Visits every output of a (N, C, [D,] H, W) pool with its window's taps: `visit(plane_or_image, o,
// count, taps)` where taps(f) calls f(tap) for the flat spatial index of each of the count taps. Contiguous input: one
// (n, c) plane per task; channels-last: one image per task (windows of neighbouring outputs
// overlap, so a backward scatter stays inside its task).
template <typename Visit>
void for_each_window(const Pool& p, bool channels_last, Visit visit) {
  at::parallel_for(0, channels_last ? p.N : p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      int64_t o = 0;
      for (int64_t od = 0; od < p.OD; ++od) {
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          for (int64_t ow = 0; ow < p.OW; ++ow, ++o) {
            const int64_t count =
                (p.d.end[od] - p.d.first[od]) * (p.h.end[oh] - p.h.first[oh]) * (p.w.end[ow] - p.w.first[ow]);
            visit(task, o, count, [&](auto&& f) {
              for (int64_t id = p.d.first[od]; id < p.d.end[od]; ++id) {
                for (int64_t ih = p.h.first[oh]; ih < p.h.end[oh]; ++ih) {
                  for (int64_t iw = p.w.first[ow]; iw < p.w.end[ow]; ++iw) f((id * p.H + ih) * p.W + iw);
                }
              }
            });
          }
        }
      }
    }
  });
}

Pool adaptive_pool(const at::Tensor& x, at::IntArrayRef input_size, at::IntArrayRef output_size) {
  const std::vector<int64_t> in = volume(input_size), out = volume(output_size);
  return {x.size(0), x.size(1), in[0], in[1], in[2], out[0], out[1], out[2],
          adaptive(in[0], out[0]), adaptive(in[1], out[1]), adaptive(in[2], out[2])};
}

// Adaptive average pooling: y[o] = Σ_window x / |window|, summed in float32 for half types.
at::Tensor adaptive_window_mean(const at::Tensor& input, at::IntArrayRef output_size) {
  TORCH_CHECK((input.dim() == 4 || input.dim() == 5) && input.dim() - 2 == int64_t(output_size.size()),
              "cnnlab_native::adaptive_window_mean: a 4-D or 5-D tensor and an output size per spatial dim");
  const bool nhwc = channels_last(input);
  const auto format = nhwc ? channels_last_format(input.dim()) : at::MemoryFormat::Contiguous;
  const at::Tensor x = input.contiguous(format);
  const Pool p = adaptive_pool(x, x.sizes().slice(2), output_size);
  const std::vector<int64_t> shape = batch_shape(p.N, p.C, output_size);
  at::Tensor out = at::empty(shape, x.options(), format);
  const int64_t inputs = p.D * p.H * p.W, outputs = p.OD * p.OH * p.OW, C = p.C;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "cnnlab_native::adaptive_window_mean", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = out.data_ptr<scalar_t>();
    if (nhwc) {
      for_each_window(p, true, [&](int64_t n, int64_t o, int64_t count, auto taps) {
        thread_local std::vector<acc_t> sum;
        sum.assign(C, acc_t(0));
        taps([&](int64_t tap) {
          const scalar_t* xt = xp + (n * inputs + tap) * C;
          for (int64_t c = 0; c < C; ++c) sum[c] += static_cast<acc_t>(xt[c]);
        });
        scalar_t* y = yp + (n * outputs + o) * C;
        for (int64_t c = 0; c < C; ++c) y[c] = static_cast<scalar_t>(sum[c] / count);
      });
    } else {
      for_each_window(p, false, [&](int64_t plane, int64_t o, int64_t count, auto taps) {
        acc_t sum = 0;
        taps([&](int64_t tap) { sum += static_cast<acc_t>(xp[plane * inputs + tap]); });
        yp[plane * outputs + o] = static_cast<scalar_t>(sum / count);
      });
    }
  });
  return out;
}

// ∂x[tap] = Σ_{windows holding tap} ∂y[o] / |window o|, in float32 for half types.
at::Tensor adaptive_window_mean_backward(const at::Tensor& grad, at::IntArrayRef input_size) {
  const bool nhwc = channels_last(grad);
  const auto format = nhwc ? channels_last_format(grad.dim()) : at::MemoryFormat::Contiguous;
  const at::Tensor g = grad.contiguous(format);
  const Pool p = adaptive_pool(g, input_size, g.sizes().slice(2));
  const std::vector<int64_t> shape = batch_shape(p.N, p.C, input_size);
  const auto acc_type = at::toOpMathType(g.scalar_type());
  at::Tensor sums = at::empty(shape, g.options().dtype(acc_type), format).zero_();
  const int64_t inputs = p.D * p.H * p.W, outputs = p.OD * p.OH * p.OW, C = p.C;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "cnnlab_native::adaptive_window_mean_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    acc_t* gi = sums.data_ptr<acc_t>();
    if (nhwc) {
      for_each_window(p, true, [&](int64_t n, int64_t o, int64_t count, auto taps) {
        const scalar_t* go = gp + (n * outputs + o) * C;
        taps([&](int64_t tap) {
          acc_t* dx = gi + (n * inputs + tap) * C;
          for (int64_t c = 0; c < C; ++c) dx[c] += static_cast<acc_t>(go[c]) / count;
        });
      });
    } else {
      for_each_window(p, false, [&](int64_t plane, int64_t o, int64_t count, auto taps) {
        const acc_t share = static_cast<acc_t>(gp[plane * outputs + o]) / count;
        taps([&](int64_t tap) { gi[plane * inputs + tap] += share; });
      });
    }
  });
  return sums.scalar_type() == g.scalar_type() ? sums : sums.to(g.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnlab_native, m) {
  m.def("window_max(Tensor input, int[] kernel, int[] stride, int[] padding, int[] dilation, int[] output_size)"
        " -> (Tensor, Tensor)");
  m.def("adaptive_window_max(Tensor input, int[] output_size) -> (Tensor, Tensor)");
  m.def("window_max_backward(Tensor grad, Tensor index, int[] input_size, bool overlapping) -> Tensor");
  m.def("adaptive_window_mean(Tensor input, int[] output_size) -> Tensor");
  m.def("adaptive_window_mean_backward(Tensor grad, int[] input_size) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnlab_native, CPU, m) {
  m.impl("window_max", &window_max);
  m.impl("adaptive_window_max", &adaptive_window_max);
  m.impl("window_max_backward", &window_max_backward);
  m.impl("adaptive_window_mean", &adaptive_window_mean);
  m.impl("adaptive_window_mean_backward", &adaptive_window_mean_backward);
}

}  // namespace cnnlab
