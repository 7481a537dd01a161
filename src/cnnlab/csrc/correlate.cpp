// Direct convolution of float32 data, channels-last (NHWC and NDHWC; below, a contiguous NCHW variant
// for 2-D with stride 1 along W): forward, input gradient and weight gradient as GEMMs over the
// kernel taps. A 2-D convolution is the 3-D one of a depth-1 image and filter.
//
// Forward, per output row (n, [od,] oh) and block of Mb outputs along W:
//     Y[Mb × O] = Σ_taps A_tap[Mb × C] · B_tap[C × O]
// where A_tap is read in place from the input (rows stride·C apart: leading dimension stride·C)
// and B_tap is the tap's filter slice, packed once per call as [kd][kh][kw][C][O]. Padding is never
// materialised: each tap multiplies only the outputs whose input it reads lies inside the image
// (a clamped range of the row; taps reading a padded row or plane are skipped), into an accumulator
// that starts at zero. The accumulator is the output row itself (float32), so each output is written
// once per tap while it sits in L1/L2 (a zero-bordered copy of the input instead cost 20 ms of the
// 38 ms forward of 64→64 3×3 @32², batch 128). Input gradient: every output row scatters
// ∂Y[OW × O] · B_tapᵀ[O × C] into the rows of ∂X it touches (leading dimension stride·C), one
// image per task, so no two tasks write the same numbers. Weight gradient: per output row and tap,
// ∂W_tapᵀ[O × C] += ∂Yᵀ[O × OW] · A_tap[OW × C], each task into its own accumulator, summed at the
// end. The GEMM microkernel is ATen's cpublas::brgemm (oneDNN's batch-reduce ukernel, AVX-512 or
// AVX2): ~265 GFLOP/s per Zen 5 core for 32×64×64 products (docs/benchmarks.md, issue 26).

#include "correlate_tiles.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace cnnlab {
namespace {

using at::native::cpublas::brgemm;
using at::native::cpublas::brgemm_release;

struct Geometry {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
};

Geometry geometry(at::IntArrayRef kernel, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                  int64_t groups) {
  return {kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups};
}

// The channels-last kernels cover 2-D and 3-D: a 2-D convolution is a 3-D one over a depth-1 image
// with a depth-1 filter. `Volume` holds the depth geometry and the sizes those kernels loop over.
struct Volume {
  int64_t kd = 1, sd = 1, pd = 0, dd = 1;
  int64_t D = 1, OD = 1;  // input and output depth
  Geometry g;             // height and width
  int64_t taps() const { return kd * g.kh * g.kw; }
};

// (N, [D,] H, W, C) sizes and the geometry of 2 or 3 spatial dims, depth first.
Volume volume(at::IntArrayRef kernel, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
              int64_t groups, int64_t depth, int64_t out_depth) {
  Volume v;
  const size_t s = kernel.size() - 2;  // 0 for 2-D, 1 for 3-D
  if (s == 1) {
    v.kd = kernel[0], v.sd = stride[0], v.pd = padding[0], v.dd = dilation[0], v.D = depth, v.OD = out_depth;
  }
  v.g = geometry(kernel.slice(s), stride.slice(s), padding.slice(s), dilation.slice(s), groups);
  return v;
}

// The outputs [lo, hi) whose tap at `offset` (= tap·dilation − padding) reads inside [0, size):
// lo·stride + offset ≥ 0 and (hi − 1)·stride + offset ≤ size − 1.
struct Range {
  int64_t lo, hi;
};

Range inside(int64_t offset, int64_t stride, int64_t size, int64_t out) {
  const int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t hi = size - 1 - offset < 0 ? 0 : std::min(out, (size - 1 - offset) / stride + 1);
  return {lo, std::max(lo, hi)};
}

// Every tap (a, i, j) whose input plane and row lie inside the image for output row (od, oh):
// f(tap, id, ih, offset, range) with the flat tap index (a·kh + i)·kw + j, the input plane and row,
// the tap's offset along W (j·dw − pw) and the outputs of the row it reads inside the image.
template <typename F>
void for_each_tap(const Volume& v, int64_t od, int64_t oh, int64_t H, int64_t W, int64_t OW, F f) {
  const Geometry& g = v.g;
  for (int64_t a = 0; a < v.kd; ++a) {
    const int64_t id = od * v.sd - v.pd + a * v.dd;
    if (id < 0 || id >= v.D) continue;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.sh - g.ph + i * g.dh;
      if (ih < 0 || ih >= H) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t offset = j * g.dw - g.pw;
        f((a * g.kh + i) * g.kw + j, id, ih, offset, inside(offset, g.sw, W, OW));
      }
    }
  }
}

constexpr int64_t kBlock = 64;  // outputs along W per product: the accumulator block stays in L1

using tiles::knob;
// Fewer channels per group than this make every tap's product too thin (K = Cg): the rows are
// gathered instead, about kRows outputs at a time (3→64 3×3 @32², batch 128: 11.7 ms forward;
// gathering short rows of many channels lost: 512→512 @4² 80 ms against 27 ms by taps, as the
// kh·kw·C × O filter matrix no longer stays in cache).
const int64_t kMinTapChannels = knob("CNNLAB_MIN_TAP_CHANNELS", 16);
const int64_t kRows = knob("CNNLAB_GATHER_OUTPUTS", 64);

// One output row's receptive fields, [OW][kd·kh·kw·Cg] for group `grp` (zeros where a tap reads
// padding): the columns of im2col for a single row, built in a buffer that stays in L2. `plane`
// is the input image (n) and `od`, `oh` the row's output depth and height.
void gather_row(const float* image, float* cols, int64_t od, int64_t oh, int64_t grp, int64_t H, int64_t W,
                int64_t C, int64_t Cg, int64_t OW, const Volume& v) {
  const Geometry& g = v.g;
  const int64_t K = v.taps() * Cg;
  for (int64_t ow = 0; ow < OW; ++ow) {
    float* dst = cols + ow * K;
    for (int64_t a = 0; a < v.kd; ++a) {
      const int64_t id = od * v.sd - v.pd + a * v.dd;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        for (int64_t j = 0; j < g.kw; ++j, dst += Cg) {
          const int64_t iw = ow * g.sw - g.pw + j * g.dw;
          if (id < 0 || id >= v.D || ih < 0 || ih >= H || iw < 0 || iw >= W) {
            std::fill(dst, dst + Cg, 0.0f);
          } else {
            const float* src = image + ((id * H + ih) * W + iw) * C + grp * Cg;
            std::copy(src, src + Cg, dst);
          }
        }
      }
    }
  }
}

// The filters of 2-D (O, Cg, kh, kw) or 3-D (O, Cg, kd, kh, kw) weights as [G][kd][kh][kw][Cg][Og]
// (`transposed`: [G][kd][kh][kw][Og][Cg]).
at::Tensor pack(const at::Tensor& weight, int64_t groups, const Volume& v, bool transposed) {
  const int64_t O = weight.size(0), Cg = weight.size(1);
  const at::Tensor w = weight.reshape({groups, O / groups, Cg, v.kd, v.g.kh, v.g.kw});
  return transposed ? w.permute({0, 3, 4, 5, 1, 2}).contiguous() : w.permute({0, 3, 4, 5, 2, 1}).contiguous();
}

// The CPU runs correlate_tiles.cpp (its AVX-512 microkernel, and vdpbf16ps for bfloat16).
bool tiles_supported() {
#if defined(__x86_64__)
  static const bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                                __builtin_cpu_supports("avx512bf16");
  return supported;
#else
  return false;
#endif
}

const bool kFloatTiles = knob("CNNLAB_FLOAT_TILES", 1) != 0;  // benchmark-only: 0 runs float32 on brgemm
const bool kAmx = knob("CNNLAB_AMX", 1) != 0;  // 0: bfloat16 on the AVX512-BF16 kernels where AMX is (tests, benchmarks)

// Whether bfloat16 products run on AMX tiles (correlate_amx.cpp) rather than vdpbf16ps.
bool on_amx(const at::Tensor& a) { return a.scalar_type() == at::kBFloat16 && kAmx && amx::supported(); }

// Which kernels compute bfloat16 convolutions here: "amx", "avx512_bf16", or "" (none).
std::string bfloat16_kernels() {
  if (!tiles_supported()) return "";
  return kAmx && amx::supported() ? "amx" : "avx512_bf16";
}

// The CPU runs correlate_tiles_avx2.cpp (float32 tiles of ymm registers) and has no AVX-512 (where
// it has, brgemm's AVX-512 code runs what the AVX-512 tiles do not: the AVX2 tiles were measured
// against brgemm's AVX2 code only).
bool avx2_only() {
#if defined(__x86_64__)
  static const bool supported =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !__builtin_cpu_supports("avx512f");
  return supported;
#else
  return false;
#endif
}

// One set of tile kernels: the three channels-last 2-D products.
struct TileProducts {
  decltype(&tiles::avx512::forward) forward;
  decltype(&tiles::avx512::input_grad) input_grad;
  decltype(&tiles::avx512::weight_grad) weight_grad;
};
constexpr TileProducts kAmxTiles{&amx::forward, &amx::input_grad, &amx::weight_grad};
constexpr TileProducts kAvx512Tiles{&tiles::avx512::forward, &tiles::avx512::input_grad, &tiles::avx512::weight_grad};
constexpr TileProducts kAvx2Tiles{&tiles::avx2::forward, &tiles::avx2::input_grad, &tiles::avx2::weight_grad};

// Where the AVX2 tiles ran at least as fast as brgemm (AMD EPYC Zen 3, 3×3, batch 128, channels-last;
// docs/benchmarks.md): forward and input gradient whose products fill whole 16-column vectors or
// have fewer than 16 columns (3 → 24 to 256 → 256 @32² to 4²: 0.82–1.05× brgemm's time; 24 columns,
// a vector and a half, 1.32×), and the weight gradient of thin inputs only, whose taps are gathered
// into one product of at most 32 columns (3 → 24: 0.54×; from 24 input channels up 1.25–1.31×).
bool avx2_columns_suit(int64_t columns) { return columns < 16 || columns % 16 == 0; }

// The tile kernels that run a channels-last product, or nullptr for brgemm: bfloat16 always (2-D,
// where the CPU has AVX512-BF16, on AMX where it has that; nothing else computes it here), float32
// 2-D on the AVX-512 tiles where the CPU has them, else (AVX2 CPUs) on the AVX2 ones where
// `avx2_suits` (the product's shape: whether it ran at least as fast as brgemm there), else brgemm.
const TileProducts* tile_products(const at::Tensor& a, const at::Tensor& b, const char* op, bool avx2_suits) {
  if (a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat) {
    if (a.dim() != 4 || !kFloatTiles) return nullptr;
    return tiles_supported() ? &kAvx512Tiles : avx2_only() && avx2_suits ? &kAvx2Tiles : nullptr;
  }
  TORCH_CHECK(a.scalar_type() == at::kBFloat16 && b.scalar_type() == at::kBFloat16 && a.dim() == 4 &&
                  tiles_supported(),
              op, ": float32 (2-D or 3-D), or bfloat16 (2-D, on a CPU with AVX512-BF16)");
  return on_amx(a) ? &kAmxTiles : &kAvx512Tiles;
}

tiles::Geometry2d geometry2d(at::IntArrayRef kernel, at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation) {
  return {kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]};
}

// Channels-last input (N, [D,] H, W, C); 2 or 3 spatial dims. Output (N, [OD,] OH, OW, O).
at::Tensor correlate_nhwc(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef out_size) {
  if (const TileProducts* kernels = tile_products(input, weight, "cnnlab_native::correlate_nhwc",
                                                 avx2_columns_suit(weight.size(0) / groups))) {
    return kernels->forward(input, weight, geometry2d(weight.sizes().slice(2), stride, padding, dilation), groups,
                            out_size[0], out_size[1]);
  }
  const bool deep = input.dim() == 5;
  const at::Tensor x = input.contiguous();
  const Volume v = volume(weight.sizes().slice(2), stride, padding, dilation, groups, deep ? x.size(1) : 1,
                          deep ? out_size[0] : 1);
  const Geometry& g = v.g;
  const int64_t N = x.size(0), H = x.size(-3), W = x.size(-2), C = x.size(-1);
  const int64_t O = weight.size(0), Cg = C / groups, Og = O / groups, OH = out_size[deep], OW = out_size[deep + 1];
  const int64_t K = v.taps() * Cg, OR = v.OD * OH;  // OR: output rows per image
  // each tap's filter slice a row-major K × N matrix, and all taps together the
  // [kd·kh·kw·Cg][Og] matrix of a gathered row
  const at::Tensor packed = pack(weight, groups, v, false);
  std::vector<int64_t> shape{N};
  shape.insert(shape.end(), out_size.begin(), out_size.end());
  shape.push_back(O);
  at::Tensor out = at::empty(shape, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* wp = packed.const_data_ptr<float>();
  float* yp = out.data_ptr<float>();
  // Few channels: gather the receptive fields of R whole output rows (about kRows outputs) and
  // multiply once, K = kd·kh·kw·Cg, M = R·OW; otherwise one product per tap and row.
  const bool gathered = Cg < kMinTapChannels;
  const int64_t R = gathered ? std::max<int64_t>(1, std::min(OR, kRows / OW)) : 1;
  const int64_t blocks = (OR + R - 1) / R;
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> cols(gathered ? R * OW * K : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, r0 = (task % blocks) * R, rows_here = std::min(R, OR - r0);
      const float* image = xp + n * v.D * H * W * C;
      float* y_row = yp + (n * OR + r0) * OW * O;
      if (gathered) {
        for (int64_t grp = 0; grp < groups; ++grp) {
          for (int64_t r = 0; r < rows_here; ++r) {
            gather_row(image, cols.data() + r * OW * K, (r0 + r) / OH, (r0 + r) % OH, grp, H, W, C, Cg, OW, v);
          }
          const int64_t outputs = rows_here * OW;
          for (int64_t lo = 0; lo < outputs; lo += kBlock) {
            const int64_t M = std::min(kBlock, outputs - lo);
            brgemm(M, Og, K, K, Og, O, false, cols.data() + lo * K, wp + grp * K * Og, y_row + lo * O + grp * Og,
                   false);
          }
        }
        continue;
      }
      const int64_t od = r0 / OH, oh = r0 % OH;
      std::fill(y_row, y_row + OW * O, 0.0f);
      for_each_tap(v, od, oh, H, W, OW, [&](int64_t tap, int64_t id, int64_t ih, int64_t offset, Range r) {
        for (int64_t lo = r.lo; lo < r.hi; lo += kBlock) {
          const int64_t M = std::min(kBlock, r.hi - lo);
          for (int64_t grp = 0; grp < groups; ++grp) {
            const float* x_tap = image + ((id * H + ih) * W + lo * g.sw + offset) * C + grp * Cg;
            const float* w_tap = wp + (grp * v.taps() + tap) * Cg * Og;
            brgemm(M, Og, Cg, g.sw * C, Og, O, true, x_tap, w_tap, y_row + lo * O + grp * Og, false);
          }
        }
      });
    }
    brgemm_release(false);
  });
  return out;
}

// ∂x (N, [D,] H, W, C) of correlate_nhwc from ∂y (N, [OD,] OH, OW, O).
at::Tensor correlate_nhwc_input_grad(const at::Tensor& grad, const at::Tensor& weight, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                     at::IntArrayRef input_size) {
  if (const TileProducts* kernels = tile_products(grad, weight, "cnnlab_native::correlate_nhwc_input_grad",
                                                 avx2_columns_suit(weight.size(1)))) {
    return kernels->input_grad(grad, weight, geometry2d(weight.sizes().slice(2), stride, padding, dilation), groups,
                               input_size[0], input_size[1]);
  }
  const bool deep = grad.dim() == 5;
  const at::Tensor dy = grad.contiguous();
  const Volume v = volume(weight.sizes().slice(2), stride, padding, dilation, groups, deep ? input_size[0] : 1,
                          deep ? dy.size(1) : 1);
  const Geometry& g = v.g;
  const int64_t N = dy.size(0), OH = dy.size(-3), OW = dy.size(-2), O = dy.size(-1);
  const int64_t Cg = weight.size(1), C = Cg * groups, Og = O / groups, H = input_size[deep], W = input_size[deep + 1];
  // each tap's filter slice transposed, a row-major K × N matrix for ∂Y · Bᵀ
  const at::Tensor packed = pack(weight, groups, v, true);
  std::vector<int64_t> shape{N};
  shape.insert(shape.end(), input_size.begin(), input_size.end());
  shape.push_back(C);
  at::Tensor out = at::empty(shape, dy.options());
  const float* gp = dy.const_data_ptr<float>();
  const float* wp = packed.const_data_ptr<float>();
  float* dxp = out.data_ptr<float>();
  const int64_t image_size = v.D * H * W * C;
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      float* image = dxp + n * image_size;
      std::fill(image, image + image_size, 0.0f);
      for (int64_t od = 0; od < v.OD; ++od) {
        for (int64_t oh = 0; oh < OH; ++oh) {
          const float* dy_row = gp + ((n * v.OD + od) * OH + oh) * OW * O;
          for_each_tap(v, od, oh, H, W, OW, [&](int64_t tap, int64_t id, int64_t ih, int64_t offset, Range r) {
            for (int64_t lo = r.lo; lo < r.hi; lo += kBlock) {
              const int64_t M = std::min(kBlock, r.hi - lo);
              for (int64_t grp = 0; grp < groups; ++grp) {
                const float* dy_block = dy_row + lo * O + grp * Og;
                const float* w_tap = wp + (grp * v.taps() + tap) * Og * Cg;
                float* dx = image + ((id * H + ih) * W + lo * g.sw + offset) * C + grp * Cg;
                brgemm(M, Cg, Og, O, Cg, g.sw * C, true, dy_block, w_tap, dx, false);
              }
            }
          });
        }
      }
    }
    brgemm_release(false);
  });
  return out;
}

// ∂w (O, Cg, [kd,] kh, kw) of correlate_nhwc from x (N, [D,] H, W, C) and ∂y (N, [OD,] OH, OW, O).
at::Tensor correlate_nhwc_weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups) {
  const int64_t taps_width = c10::multiply_integers(weight_shape.slice(1));  // C/G · kh · kw
  if (const TileProducts* kernels =
          tile_products(input, grad, "cnnlab_native::correlate_nhwc_weight_grad", taps_width <= 32)) {
    return kernels->weight_grad(input, grad, weight_shape, geometry2d(weight_shape.slice(2), stride, padding, dilation),
                                groups);
  }
  const bool deep = input.dim() == 5;
  const at::Tensor x = input.contiguous(), dy = grad.contiguous();
  const Volume v = volume(weight_shape.slice(2), stride, padding, dilation, groups, deep ? x.size(1) : 1,
                          deep ? dy.size(1) : 1);
  const Geometry& g = v.g;
  const int64_t N = x.size(0), H = x.size(-3), W = x.size(-2), C = x.size(-1);
  const int64_t OH = dy.size(-3), OW = dy.size(-2), O = dy.size(-1), Cg = C / groups, Og = O / groups;
  const int64_t per_task = groups * v.taps() * Og * Cg, rows = N * v.OD * OH;
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), rows), 1);
  // one [G][kd][kh][kw][Og][Cg] accumulator per task, summed at the end
  at::Tensor partial = at::zeros({tasks, per_task}, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* gp = dy.const_data_ptr<float>();
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> dyt(O * OW);  // ∂Yᵀ of one output row, [O][OW]: each product's A, row-major
    for (int64_t t = begin; t < end; ++t) {
      float* acc = pp + t * per_task;
      for (int64_t row = rows * t / tasks; row < rows * (t + 1) / tasks; ++row) {
        const int64_t n = row / (v.OD * OH), od = row / OH % v.OD, oh = row % OH;
        const float* image = xp + n * v.D * H * W * C;
        const float* dy_row = gp + row * OW * O;
        for (int64_t ow = 0; ow < OW; ++ow) {
          for (int64_t o = 0; o < O; ++o) dyt[o * OW + ow] = dy_row[ow * O + o];
        }
        for_each_tap(v, od, oh, H, W, OW, [&](int64_t tap, int64_t id, int64_t ih, int64_t offset, Range r) {
          if (r.lo >= r.hi) return;
          for (int64_t grp = 0; grp < groups; ++grp) {
            const float* dyt_block = dyt.data() + grp * Og * OW + r.lo;
            const float* x_tap = image + ((id * H + ih) * W + r.lo * g.sw + offset) * C + grp * Cg;
            float* dw = acc + (grp * v.taps() + tap) * Og * Cg;
            brgemm(Og, Cg, r.hi - r.lo, OW, g.sw * C, Cg, true, dyt_block, x_tap, dw, false);
          }
        });
      }
    }
    brgemm_release(false);
  });
  // [G][kd][kh][kw][Og][Cg] → (O, Cg, [kd,] kh, kw)
  return partial.sum(0)
      .view({groups, v.kd, g.kh, g.kw, Og, Cg})
      .permute({0, 4, 5, 1, 2, 3})
      .reshape(weight_shape)
      .contiguous();
}

// The same three products on contiguous (NCHW) data, for convolutions with stride 1 along W, so
// that an output row's positions are contiguous in memory and become the GEMM's N dimension:
//     Y[Og × OW] (ld OH·OW) += W_tap[Og × Cg] · X_tap[Cg × OW] (ld H·W)
// per output row and tap, the roles of channels and positions swapped against NHWC. No layout
// copy of the activations is made (NCHW models otherwise pay two per convolution, and up to 1.5×
// torch's peak memory for a step). The weight gradient transposes one input row at a time into a
// thread-local [W][Cg] buffer, so that its products' B operand is row-major.
at::Tensor correlate_nchw(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, at::IntArrayRef out_size) {
  TORCH_CHECK(input.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat && stride[1] == 1,
              "cnnlab_native::correlate_nchw: float32, stride 1 along W");
  const Volume v = volume(weight.sizes().slice(2), stride, padding, dilation, groups, 1, 1);
  const Geometry& g = v.g;
  const at::Tensor x = input.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = weight.size(0), Cg = C / groups, Og = O / groups, OH = out_size[0], OW = out_size[1];
  // [G][kh][kw][Og][Cg]: each tap's filter slice a row-major M × K matrix
  const at::Tensor packed = weight.view({groups, Og, Cg, g.kh, g.kw}).permute({0, 3, 4, 1, 2}).contiguous();
  at::Tensor out = at::zeros({N, O, OH, OW}, x.options());
  const float* xp = x.const_data_ptr<float>();
  const float* wp = packed.const_data_ptr<float>();
  float* yp = out.data_ptr<float>();
  at::parallel_for(0, N * OH, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / OH, oh = row % OH;
      for_each_tap(v, 0, oh, H, W, OW, [&](int64_t tap, int64_t, int64_t ih, int64_t offset, Range r) {
        if (r.lo >= r.hi) return;
        for (int64_t grp = 0; grp < groups; ++grp) {
          const float* a = wp + (grp * v.taps() + tap) * Og * Cg;
          const float* b = xp + ((n * C + grp * Cg) * H + ih) * W + r.lo + offset;
          float* c = yp + ((n * O + grp * Og) * OH + oh) * OW + r.lo;
          brgemm(Og, r.hi - r.lo, Cg, Cg, H * W, OH * OW, true, a, b, c, false);
        }
      });
    }
    brgemm_release(false);
  });
  return out;
}

at::Tensor correlate_nchw_input_grad(const at::Tensor& grad, const at::Tensor& weight, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                     at::IntArrayRef input_size) {
  TORCH_CHECK(grad.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat && stride[1] == 1,
              "cnnlab_native::correlate_nchw_input_grad: float32, stride 1 along W");
  const Volume v = volume(weight.sizes().slice(2), stride, padding, dilation, groups, 1, 1);
  const Geometry& g = v.g;
  const at::Tensor dy = grad.contiguous();
  const int64_t N = dy.size(0), O = dy.size(1), OH = dy.size(2), OW = dy.size(3);
  const int64_t Cg = weight.size(1), C = Cg * groups, Og = O / groups, H = input_size[0], W = input_size[1];
  // [G][kh][kw][Cg][Og]: each tap's filter slice transposed, a row-major M × K matrix
  const at::Tensor packed = weight.view({groups, Og, Cg, g.kh, g.kw}).permute({0, 3, 4, 2, 1}).contiguous();
  at::Tensor out = at::zeros({N, C, H, W}, dy.options());
  const float* gp = dy.const_data_ptr<float>();
  const float* wp = packed.const_data_ptr<float>();
  float* dxp = out.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t oh = 0; oh < OH; ++oh) {
        for_each_tap(v, 0, oh, H, W, OW, [&](int64_t tap, int64_t, int64_t ih, int64_t offset, Range r) {
          if (r.lo >= r.hi) return;
          for (int64_t grp = 0; grp < groups; ++grp) {
            const float* a = wp + (grp * v.taps() + tap) * Cg * Og;
            const float* b = gp + ((n * O + grp * Og) * OH + oh) * OW + r.lo;
            float* c = dxp + ((n * C + grp * Cg) * H + ih) * W + r.lo + offset;
            brgemm(Cg, r.hi - r.lo, Og, Og, OH * OW, H * W, true, a, b, c, false);
          }
        });
      }
    }
    brgemm_release(false);
  });
  return out;
}

at::Tensor correlate_nchw_weight_grad(const at::Tensor& input, const at::Tensor& grad, at::IntArrayRef weight_shape,
                                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups) {
  TORCH_CHECK(input.scalar_type() == at::kFloat && grad.scalar_type() == at::kFloat && stride[1] == 1,
              "cnnlab_native::correlate_nchw_weight_grad: float32, stride 1 along W");
  const Geometry g = geometry(weight_shape.slice(2), stride, padding, dilation, groups);
  const at::Tensor x = input.contiguous(), dy = grad.contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = dy.size(1), OH = dy.size(2), OW = dy.size(3), Cg = C / groups, Og = O / groups;
  const int64_t per_task = groups * g.kh * g.kw * Og * Cg, rows = N * OH;
  const int64_t tasks = std::max<int64_t>(std::min<int64_t>(at::get_num_threads(), rows), 1);
  at::Tensor partial = at::zeros({tasks, per_task}, x.options());  // [G][kh][kw][Og][Cg] per task
  const float* xp = x.const_data_ptr<float>();
  const float* gp = dy.const_data_ptr<float>();
  float* pp = partial.data_ptr<float>();
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> xt(W * Cg);  // one input row of one group, transposed: [W][Cg]
    for (int64_t t = begin; t < end; ++t) {
      float* acc = pp + t * per_task;
      for (int64_t row = rows * t / tasks; row < rows * (t + 1) / tasks; ++row) {
        const int64_t n = row / OH, oh = row % OH;
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t grp = 0; grp < groups; ++grp) {
            const float* x_row = xp + ((n * C + grp * Cg) * H + ih) * W;
            for (int64_t c = 0; c < Cg; ++c) {
              for (int64_t w = 0; w < W; ++w) xt[w * Cg + c] = x_row[c * H * W + w];
            }
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t offset = j * g.dw - g.pw;
              const Range r = inside(offset, 1, W, OW);
              if (r.lo >= r.hi) continue;
              const float* a = gp + ((n * O + grp * Og) * OH + oh) * OW + r.lo;
              const float* b = xt.data() + (r.lo + offset) * Cg;
              float* c = acc + ((grp * g.kh + i) * g.kw + j) * Og * Cg;
              brgemm(Og, Cg, r.hi - r.lo, OH * OW, Cg, Cg, true, a, b, c, false);
            }
          }
        }
      }
    }
    brgemm_release(false);
  });
  return partial.sum(0).view({groups, g.kh, g.kw, Og, Cg}).permute({0, 3, 4, 1, 2}).reshape(weight_shape).contiguous();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnlab_native, m) {
  m.def("correlate_nhwc(Tensor input, Tensor weight, int[] stride, int[] padding, int[] dilation, int groups,"
        " int[] out_size) -> Tensor");
  m.def("correlate_nhwc_input_grad(Tensor grad, Tensor weight, int[] stride, int[] padding, int[] dilation,"
        " int groups, int[] input_size) -> Tensor");
  m.def("correlate_nhwc_weight_grad(Tensor input, Tensor grad, int[] weight_shape, int[] stride, int[] padding,"
        " int[] dilation, int groups) -> Tensor");
  m.def("bfloat16_supported() -> bool", [] { return tiles_supported(); });  // the CPU runs correlate_tiles.cpp
  m.def("bfloat16_kernels() -> str", &bfloat16_kernels);
  m.def("correlate_nchw(Tensor input, Tensor weight, int[2] stride, int[2] padding, int[2] dilation, int groups,"
        " int[2] out_size) -> Tensor");
  m.def("correlate_nchw_input_grad(Tensor grad, Tensor weight, int[2] stride, int[2] padding, int[2] dilation,"
        " int groups, int[2] input_size) -> Tensor");
  m.def("correlate_nchw_weight_grad(Tensor input, Tensor grad, int[] weight_shape, int[2] stride, int[2] padding,"
        " int[2] dilation, int groups) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnlab_native, CPU, m) {
  m.impl("correlate_nhwc", &correlate_nhwc);
  m.impl("correlate_nhwc_input_grad", &correlate_nhwc_input_grad);
  m.impl("correlate_nhwc_weight_grad", &correlate_nhwc_weight_grad);
  m.impl("correlate_nchw", &correlate_nchw);
  m.impl("correlate_nchw_input_grad", &correlate_nchw_input_grad);
  m.impl("correlate_nchw_weight_grad", &correlate_nchw_weight_grad);
}

}  // namespace cnnlab
