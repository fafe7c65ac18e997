// The regularizers of cnnviz/regularizers.hpp: fused CPU kernels (one pass for the value,
// one for the gradient), the same formulas as composed ATen expressions for other devices
// and dtypes and for double backward, and the autograd functions that choose between them.
//
// Sums run over fixed blocks whose partial sums are added in order, so a result does not
// depend on the thread count. Partial sums accumulate in double for float inputs too.
#include "cnnviz/regularizers.hpp"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

namespace cnnviz {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Impl = detail::RegularizerImpl;

/// Elements per parallel task: large enough to amortize scheduling, small enough to
/// split a 3 x 224 x 224 image between threads.
constexpr int64_t kBlock = 16384;

// ---------------------------------------------------------------------------------------
// Arithmetic and loop helpers

/// v^P for a compile-time P >= 0 by repeated squaring (vectorizes, unlike pow).
template <int P, class T>
inline T ipow(T v) {
  if constexpr (P == 0) {
    return T(1);
  } else if constexpr (P == 1) {
    return v;
  } else {
    const T h = ipow<P / 2>(v);
    if constexpr (P % 2 == 1) return h * h * v;
    else return h * h;
  }
}

/// b^(Q/4) for a compile-time Q >= 0 and b >= 0, from products and square roots.
template <int Q, class T>
inline T qpow(T b) {
  T r = ipow<Q / 4>(b);
  if constexpr (Q % 4 >= 2) r *= std::sqrt(b);
  if constexpr (Q % 2 == 1) r *= std::sqrt(std::sqrt(b));
  return r;
}

/// -1, 0 or 1, branch-free.
template <class T>
inline T sgn(T v) {
  return T(v > T(0)) - T(v < T(0));
}

/// Calls f(std::integral_constant<int, H>{}) with H = 2e for the exponents e that have
/// fast paths (0.5 to 4 in steps of 0.5, and 5 to 8) and H = 0 (runtime pow) otherwise.
template <class F>
decltype(auto) dispatch_exponent(double e, F&& f) {
  const double h = 2 * e;
  const bool fast = h == std::floor(h) && h >= 1 && h <= 16 && (h <= 8 || std::fmod(h, 2) == 0);
  switch (fast ? static_cast<int>(h) : 0) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 10: return f(std::integral_constant<int, 10>{});
    case 12: return f(std::integral_constant<int, 12>{});
    case 14: return f(std::integral_constant<int, 14>{});
    case 16: return f(std::integral_constant<int, 16>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// The library is built for the baseline x86-64 ISA; on CPUs with AVX2 and FMA the loop
// bodies run from a second build of the same code: `flatten` inlines the whole call tree
// of f into a function compiled for that target.
#if defined(__GNUC__) && defined(__x86_64__)
#define CNNVIZ_AVX2_DISPATCH 1
template <class F>
__attribute__((target("avx2,fma"), flatten)) auto run_avx2(const F& f) {
  return f();
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

/// Runs f() from the best build for this CPU.
template <class F>
auto run_simd(const F& f) {
#ifdef CNNVIZ_AVX2_DISPATCH
  if (cpu_has_avx2()) return run_avx2(f);
#endif
  return f();
}

/// Sum over i < n of f(i) in double. `omp simd` lets the compiler reorder this one sum
/// into vector lanes (the order is still fixed for a given build).
template <class F>
inline double lane_sum(int64_t n, const F& f) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(f(i));
  return s;
}

/// Sum of block(b) over b < nblocks: blocks run in parallel, their sums are added in order.
template <class F>
double parallel_sum(int64_t nblocks, const F& block) {
  std::vector<double> partial(static_cast<size_t>(nblocks), 0.0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    run_simd([&] {
      for (int64_t b = b0; b < b1; ++b) partial[b] = block(b);
    });
  });
  return std::accumulate(partial.begin(), partial.end(), 0.0);
}

/// f(i0, i1) over [0, n) in parallel tasks of at least `grain` indices.
template <class F>
void parallel_chunks(int64_t n, int64_t grain, const F& f) {
  at::parallel_for(0, n, grain, [&](int64_t i0, int64_t i1) { run_simd([&] { f(i0, i1); }); });
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------
// Validation

void check_tensor(const Tensor& x, const char* fn, const char* name) {
  TORCH_CHECK_VALUE(x.defined(), "cnnviz: ", fn, ": ", name, " is an undefined tensor");
  TORCH_CHECK_TYPE(x.layout() == torch::kStrided, "cnnviz: ", fn, ": ", name,
                   " must be a dense tensor, got layout ", x.layout());
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "cnnviz: ", fn, ": ", name,
                   " must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.numel() > 0, "cnnviz: ", fn, ": ", name, " is empty (shape ", x.sizes(),
                    ")");
}

void check_exponent(double e, const char* fn, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(e) && e > 0, "cnnviz: ", fn, ": ", name,
                    " must be a positive finite number, got ", e);
}

bool all_finite(const Tensor& x) { return at::isfinite(x).all().item<bool>(); }

[[noreturn]] void throw_non_finite(const char* fn, const char* name) {
  TORCH_CHECK_VALUE(false, "cnnviz: ", fn, ": ", name, " contains NaN or infinity");
}

/// The fused kernels take CPU float and double tensors.
bool fusable(const Tensor& x) {
  return x.device().is_cpu() &&
         (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble);
}

bool use_fused(Impl impl, const Tensor& x, const char* fn) {
  if (impl == Impl::composed) return false;
  if (impl == Impl::fused) {
    TORCH_CHECK_VALUE(fusable(x), "cnnviz: ", fn,
                      ": the fused kernels need a CPU float or double tensor, got ",
                      x.scalar_type(), " on ", x.device());
    return true;
  }
  return fusable(x);
}

/// The dtype the composed expressions compute in: half and bfloat16 sums are taken in float.
Tensor compute_view(const Tensor& x) {
  return (x.scalar_type() == torch::kHalf || x.scalar_type() == torch::kBFloat16)
             ? x.to(torch::kFloat)
             : x;
}

/// The value as a 0-dim tensor of the result dtype (float for half and bfloat16, whose
/// range a sum over an image easily exceeds).
Tensor scalar_result(double v, const Tensor& like) {
  auto dtype = like.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  return torch::scalar_tensor(v, like.options().dtype(dtype));
}

// ---------------------------------------------------------------------------------------
// alpha norm: sum |x|^alpha

/// |x|^alpha and its derivative; alpha = H / 2, or the runtime alpha for H = 0.
template <int H, class T>
struct AlphaPower {
  T alpha;
  T value(T x) const {
    const T a = std::abs(x);
    if constexpr (H > 0) return qpow<2 * H>(a);
    else return std::pow(a, alpha);
  }
  /// alpha |x|^(alpha-1) sign(x), defined as 0 at x == 0 (infinite there for alpha < 1).
  T derivative(T x) const {
    const T a = std::abs(x);
    if constexpr (H >= 2) return T(H / 2.0) * qpow<2 * H - 4>(a) * sgn(x);
    else if constexpr (H == 1) return x != T(0) ? T(0.5) * sgn(x) / std::sqrt(a) : T(0);
    else return x != T(0) ? alpha * std::pow(a, alpha - T(1)) * sgn(x) : T(0);
  }
};

// The loops below take their parameters by value and their arrays as __restrict so that
// the compiler can keep the parameters in registers and vectorize.

/// scale * p.derivative(x[i]) into g[i], i < n.
template <class P, class T>
inline void alpha_norm_grad_loop(P p, T scale, const T* __restrict x, T* __restrict g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = scale * p.derivative(x[i]);
}

template <class T>
double alpha_norm_value_kernel(const T* x, int64_t n, double alpha) {
  return dispatch_exponent(alpha, [&](auto k) {
    const AlphaPower<decltype(k)::value, T> p{static_cast<T>(alpha)};
    return parallel_sum(ceil_div(n, kBlock), [=](int64_t b) {
      const T* xb = x + b * kBlock;
      return lane_sum(std::min(kBlock, n - b * kBlock), [=](int64_t i) { return p.value(xb[i]); });
    });
  });
}

template <class T>
void alpha_norm_grad_kernel(const T* x, T* g, int64_t n, double alpha, double scale) {
  dispatch_exponent(alpha, [&](auto k) {
    const AlphaPower<decltype(k)::value, T> p{static_cast<T>(alpha)};
    parallel_chunks(n, kBlock, [=](int64_t i0, int64_t i1) {
      alpha_norm_grad_loop(p, static_cast<T>(scale), x + i0, g + i0, i1 - i0);
    });
  });
}

double alpha_norm_fused(const Tensor& x, double alpha) {
  auto xc = x.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "cnnviz_alpha_norm", [&] {
    return alpha_norm_value_kernel(xc.data_ptr<scalar_t>(), xc.numel(), alpha);
  });
}

Tensor alpha_norm_grad_fused(const Tensor& x, double alpha, double scale) {
  auto xc = x.contiguous();
  auto g = torch::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "cnnviz_alpha_norm_backward", [&] {
    alpha_norm_grad_kernel(xc.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), xc.numel(), alpha,
                           scale);
  });
  return g;
}

Tensor alpha_norm_composed(const Tensor& x, double alpha) {
  auto a = compute_view(x).abs();
  if (alpha == 1) return a.sum();
  if (alpha == 2) return (a * a).sum();
  return a.pow(alpha).sum();
}

/// go * alpha |x|^(alpha-1) sign(x). Where x == 0, pow sees 1 and sign gives 0, so the
/// gradient is 0 and stays free of NaN when differentiated again.
Tensor alpha_norm_grad_composed(const Tensor& x, double alpha, const Tensor& go) {
  auto xf = compute_view(x);
  auto safe = torch::where(xf != 0, xf.abs(), torch::ones_like(xf));
  return (go * alpha * safe.pow(alpha - 1) * torch::sign(xf)).to(x.scalar_type());
}

struct AlphaNormFunction : torch::autograd::Function<AlphaNormFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double alpha, bool fused) {
    ctx->save_for_backward({x});
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["fused"] = fused;
    const double v = fused ? alpha_norm_fused(x, alpha) : alpha_norm_composed(x, alpha).item<double>();
    // Every element enters the sum with a non-negative term, so a NaN or infinity in x
    // shows in the value; a finite x with an infinite value is an overflow and stands.
    if (!std::isfinite(v) && !all_finite(x)) throw_non_finite("alpha_norm", "x");
    return scalar_result(v, x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const double alpha = ctx->saved_data["alpha"].toDouble();
    Tensor g;
    // Under create_graph the gradient must itself be differentiable: compose it.
    if (ctx->saved_data["fused"].toBool() && !at::GradMode::is_enabled())
      g = alpha_norm_grad_fused(x, alpha, grads[0].item<double>());
    else
      g = alpha_norm_grad_composed(x, alpha, grads[0]);
    return {g, Tensor(), Tensor()};
  }
};

// ---------------------------------------------------------------------------------------
// total variation: sum over i < H-1, j < W-1 of (dh^2 + dv^2)^(beta/2)

/// The term g(s) = s^(beta/2) of s = dh^2 + dv^2 and its gradient flux
/// (dg/d dh, dg/d dv) = beta s^(beta/2 - 1) (dh, dv); beta = H / 2, or the runtime beta
/// for H = 0.
template <int H, class T>
struct TvPower {
  T beta;
  T value(T s) const {
    if constexpr (H > 0) return qpow<H>(s);
    else return std::pow(s, beta / T(2));
  }
  /// Writes scale times the flux. For beta < 2 the factor s^(beta/2 - 1) is infinite at
  /// s == 0, where the flux is defined as 0 (a subgradient); it is computed as
  /// beta g(s) (dh / s) so that tiny differences do not overflow in float.
  void flux(T dh, T dv, T scale, T& fh, T& fv) const {
    const T s = dh * dh + dv * dv;
    if constexpr (H >= 4) {
      const T w = scale * T(H / 2.0) * qpow<H - 4>(s);
      fh = w * dh;
      fv = w * dv;
    } else if constexpr (H > 0) {
      const T w = scale * T(H / 2.0) * value(s);
      fh = s > T(0) ? w * (dh / s) : T(0);
      fv = s > T(0) ? w * (dv / s) : T(0);
    } else if (beta >= T(2)) {
      const T w = scale * beta * std::pow(s, beta / T(2) - T(1));
      fh = w * dh;
      fv = w * dv;
    } else {
      const T w = scale * beta * value(s);
      fh = s > T(0) ? w * (dh / s) : T(0);
      fv = s > T(0) ? w * (dv / s) : T(0);
    }
  }
};

struct TvShape {
  int64_t planes, h, w;
};

TvShape tv_shape(const Tensor& x) {
  return {x.numel() / (x.size(-1) * x.size(-2)), x.size(-2), x.size(-1)};
}

/// The sum of the W - 1 terms of one row (a: row i, d: row i + 1).
template <class P, class T>
inline double tv_value_row(P p, const T* __restrict a, const T* __restrict d, int64_t W) {
  return lane_sum(W - 1, [=](int64_t j) {
    const T dh = a[j + 1] - a[j], dv = d[j] - a[j];
    return p.value(dh * dh + dv * dv);
  });
}

/// The scaled fluxes of the W - 1 terms of one row; the last column has none.
template <class P, class T>
inline void tv_flux_row(P p, T scale, const T* __restrict a, const T* __restrict d,
                        T* __restrict fh, T* __restrict fv, int64_t W) {
  for (int64_t j = 0; j < W - 1; ++j) {
    T h, v;
    p.flux(a[j + 1] - a[j], d[j] - a[j], scale, h, v);
    fh[j] = h;
    fv[j] = v;
  }
  fh[W - 1] = fv[W - 1] = T(0);
}

/// One row of the gradient: g[j] = fv_prev[j] - fh[j] - fv[j] + fh[j-1].
template <class T>
inline void tv_grad_row(const T* __restrict fv_prev, const T* __restrict fh,
                        const T* __restrict fv, T* __restrict g, int64_t W) {
  g[0] = fv_prev[0] - fh[0] - fv[0];
  for (int64_t j = 1; j < W; ++j) g[j] = fv_prev[j] - fh[j] - fv[j] + fh[j - 1];
}

template <class T>
double tv_value_kernel(const T* x, TvShape sh, double beta) {
  const int64_t H = sh.h, W = sh.w;
  const int64_t rows = sh.planes * (H - 1);  // rows of terms
  const int64_t rows_per_block = std::max<int64_t>(1, kBlock / W);
  return dispatch_exponent(beta, [&](auto k) {
    const TvPower<decltype(k)::value, T> p{static_cast<T>(beta)};
    return parallel_sum(ceil_div(rows, rows_per_block), [=](int64_t b) {
      double s = 0;
      const int64_t r1 = std::min(rows, (b + 1) * rows_per_block);
      for (int64_t r = b * rows_per_block; r < r1; ++r) {
        const T* a = x + ((r / (H - 1)) * H + r % (H - 1)) * W;  // row i of its image
        s += tv_value_row(p, a, a + W, W);
      }
      return s;
    });
  });
}

/// The gradient is gathered per output row, so threads never write the same element:
///   g[i][j] = fv[i-1][j] - fh[i][j] - fv[i][j] + fh[i][j-1]
/// with the fluxes (fh, fv) of the term at (i, j), and 0 for terms outside the image.
template <class T>
void tv_grad_kernel(const T* x, T* g, TvShape sh, double beta, double scale) {
  const int64_t H = sh.h, W = sh.w;
  const int64_t rows = sh.planes * H;  // rows of the gradient
  const int64_t rows_per_block = std::max<int64_t>(1, kBlock / W);
  dispatch_exponent(beta, [&](auto k) {
    const TvPower<decltype(k)::value, T> p{static_cast<T>(beta)};
    const T sc = static_cast<T>(scale);
    parallel_chunks(ceil_div(rows, rows_per_block), 1, [=](int64_t b0, int64_t b1) {
      std::vector<T> buf(3 * static_cast<size_t>(W));
      T* fh = buf.data();
      T* fv = fh + W;
      T* fv_prev = fv + W;
      const int64_t r0 = b0 * rows_per_block, r1 = std::min(rows, b1 * rows_per_block);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = r % H;
        const T* a = x + r * W;
        if (i == 0)
          std::fill(fv_prev, fv_prev + W, T(0));
        else if (r == r0)
          tv_flux_row(p, sc, a - W, a, fh, fv_prev, W);  // the row above, once per task
        if (i < H - 1) {
          tv_flux_row(p, sc, a, a + W, fh, fv, W);
        } else {  // the last row has no terms of its own
          std::fill(fh, fh + W, T(0));
          std::fill(fv, fv + W, T(0));
        }
        tv_grad_row(fv_prev, fh, fv, g + r * W, W);
        std::swap(fv, fv_prev);
      }
    });
  });
}

double tv_fused(const Tensor& x, double beta) {
  auto xc = x.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "cnnviz_total_variation", [&] {
    return tv_value_kernel(xc.data_ptr<scalar_t>(), tv_shape(xc), beta);
  });
}

Tensor tv_grad_fused(const Tensor& x, double beta, double scale) {
  auto xc = x.contiguous();
  auto g = torch::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "cnnviz_total_variation_backward", [&] {
    tv_grad_kernel(xc.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), tv_shape(xc), beta, scale);
  });
  return g;
}

struct TvDiffs {
  Tensor dh, dv;
};

TvDiffs tv_diffs(const Tensor& x) {
  const int64_t H = x.size(-2), W = x.size(-1);
  auto top = x.narrow(-2, 0, H - 1);
  auto a = top.narrow(-1, 0, W - 1);
  return {top.narrow(-1, 1, W - 1) - a, x.narrow(-2, 1, H - 1).narrow(-1, 0, W - 1) - a};
}

Tensor tv_composed(const Tensor& x, double beta) {
  auto d = tv_diffs(compute_view(x));
  auto s = d.dh * d.dh + d.dv * d.dv;
  if (beta == 2) return s.sum();
  if (beta == 1) return s.sqrt().sum();
  return s.pow(beta / 2).sum();
}

Tensor tv_grad_composed(const Tensor& x, double beta, const Tensor& go) {
  auto xf = compute_view(x);
  auto d = tv_diffs(xf);
  Tensor fh, fv;
  if (beta == 2) {
    fh = 2 * go * d.dh;
    fv = 2 * go * d.dv;
  } else {
    // beta r^(beta-1) (dh, dv) / r with r = sqrt(s); where s == 0 the flux is 0, and r is
    // computed from 1 there so that neither this nor its derivative produces NaN.
    auto s = d.dh * d.dh + d.dv * d.dv;
    auto pos = s > 0;
    auto r = torch::where(pos, s, torch::ones_like(s)).sqrt();
    auto m = go * beta * r.pow(beta - 1);
    auto zero = torch::zeros_like(s);
    fh = torch::where(pos, m * (d.dh / r), zero);
    fv = torch::where(pos, m * (d.dv / r), zero);
  }
  // Scatter the fluxes back by padding: -(fh + fv) at (i, j), fh at (i, j+1), fv at (i+1, j).
  auto g = torch::constant_pad_nd(-(fh + fv), {0, 1, 0, 1}) +
           torch::constant_pad_nd(fh, {1, 0, 0, 1}) + torch::constant_pad_nd(fv, {0, 1, 1, 0});
  return g.to(x.scalar_type());
}

struct TotalVariationFunction : torch::autograd::Function<TotalVariationFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double beta, bool fused) {
    ctx->save_for_backward({x});
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["fused"] = fused;
    const int64_t H = x.size(-2), W = x.size(-1);
    if (H < 2 || W < 2) {  // no terms: nothing would reveal a NaN
      if (!all_finite(x)) throw_non_finite("total_variation", "x");
      return scalar_result(0.0, x);
    }
    const double v = fused ? tv_fused(x, beta) : tv_composed(x, beta).item<double>();
    // Terms are non-negative and cover every element but the bottom-right corner of each
    // image, so a NaN or infinity shows in the value or in the corners.
    if (!std::isfinite(v) ? !all_finite(x) : !all_finite(x.select(-1, W - 1).select(-1, H - 1)))
      throw_non_finite("total_variation", "x");
    return scalar_result(v, x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const double beta = ctx->saved_data["beta"].toDouble();
    Tensor g;
    if (x.size(-2) < 2 || x.size(-1) < 2)
      g = torch::zeros_like(x);
    else if (ctx->saved_data["fused"].toBool() && !at::GradMode::is_enabled())
      g = tv_grad_fused(x, beta, grads[0].item<double>());
    else
      g = tv_grad_composed(x, beta, grads[0]);
    return {g, Tensor(), Tensor()};
  }
};

// ---------------------------------------------------------------------------------------
// euclidean loss: ||current - target||^2 / ||target||^2

struct EuclideanSums {
  double d = 0;  ///< ||c - t||^2
  double s = 0;  ///< ||t||^2
};

/// The two sums over one block. kLanes independent accumulators per sum keep the vector
/// units busy (one accumulator would wait on each add); they sum in T, which is full
/// vector width for float, and fold into double every kRun elements, which bounds the
/// length, and so the rounding error, of each float sum.
template <class T>
inline EuclideanSums euclidean_block(const T* __restrict t, const T* __restrict c, int64_t m) {
  constexpr int64_t kLanes = 32, kRun = 2048;
  EuclideanSums sums;
  int64_t i = 0;
  for (; i + kLanes <= m;) {
    T d2[kLanes] = {}, t2[kLanes] = {};
    for (const int64_t e = std::min(m, i + kRun) - kLanes; i <= e; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) {
        const T d = c[i + j] - t[i + j];
        d2[j] += d * d;
        t2[j] += t[i + j] * t[i + j];
      }
    }
    for (int64_t w = kLanes / 2; w > 0; w /= 2) {  // tree fold: vector adds, short chains
      for (int64_t j = 0; j < w; ++j) {
        d2[j] += d2[j + w];
        t2[j] += t2[j + w];
      }
    }
    sums.d += d2[0];
    sums.s += t2[0];
  }
  for (; i < m; ++i) {
    const double d = static_cast<double>(c[i]) - t[i];
    sums.d += d * d;
    sums.s += static_cast<double>(t[i]) * t[i];
  }
  return sums;
}

template <class T>
EuclideanSums euclidean_kernel(const T* t, const T* c, int64_t n) {
  const int64_t nblocks = ceil_div(n, kBlock);
  std::vector<EuclideanSums> partial(static_cast<size_t>(nblocks));
  parallel_chunks(nblocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      partial[b] = euclidean_block(t + b * kBlock, c + b * kBlock, std::min(kBlock, n - b * kBlock));
  });
  EuclideanSums total;
  for (const auto& p : partial) {
    total.d += p.d;
    total.s += p.s;
  }
  return total;
}

/// gc = a (c - t) and gt = -gc - b t over n elements, each written only when given.
template <class T>
inline void euclidean_grad_loop(T a, T b, const T* __restrict t, const T* __restrict c,
                                T* __restrict gc, T* __restrict gt, int64_t n) {
  if (gc && gt) {
    for (int64_t i = 0; i < n; ++i) {
      const T g = a * (c[i] - t[i]);
      gc[i] = g;
      gt[i] = -g - b * t[i];
    }
  } else if (gc) {
    for (int64_t i = 0; i < n; ++i) gc[i] = a * (c[i] - t[i]);
  } else if (gt) {
    for (int64_t i = 0; i < n; ++i) gt[i] = a * (t[i] - c[i]) - b * t[i];
  }
}

template <class T>
void euclidean_grad_kernel(const T* t, const T* c, T* gc, T* gt, int64_t n, double kc,
                           double kt) {
  // The forward's blocks and split between threads, walked backwards: the blocks a thread
  // read last in the forward are the ones still in its cache.
  parallel_chunks(ceil_div(n, kBlock), 1, [=](int64_t b0, int64_t b1) {
    for (int64_t b = b1 - 1; b >= b0; --b) {
      const int64_t i0 = b * kBlock;
      euclidean_grad_loop(static_cast<T>(kc), static_cast<T>(kt), t + i0, c + i0,
                          gc ? gc + i0 : nullptr, gt ? gt + i0 : nullptr,
                          std::min(kBlock, n - i0));
    }
  });
}

struct EuclideanLossFunction : torch::autograd::Function<EuclideanLossFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& target, const Tensor& current,
                        bool fused) {
    ctx->save_for_backward({target, current});
    ctx->saved_data["fused"] = fused;
    double d, s;
    if (fused) {
      auto tc = target.contiguous(), cc = current.contiguous();
      const auto sums = AT_DISPATCH_FLOATING_TYPES(tc.scalar_type(), "cnnviz_euclidean_loss", [&] {
        return euclidean_kernel(tc.data_ptr<scalar_t>(), cc.data_ptr<scalar_t>(), tc.numel());
      });
      d = sums.d;
      s = sums.s;
    } else {
      auto t = compute_view(target), c = compute_view(current);
      d = (c - t).pow(2).sum().item<double>();
      s = t.pow(2).sum().item<double>();
    }
    // Both sums have non-negative terms over every element of both tensors.
    if (!std::isfinite(d) || !std::isfinite(s)) {
      if (!all_finite(target)) throw_non_finite("euclidean_loss", "target");
      if (!all_finite(current)) throw_non_finite("euclidean_loss", "current");
    }
    TORCH_CHECK_VALUE(s > 0, "cnnviz: euclidean_loss: target is all zeros (its norm normalizes the loss)");
    ctx->saved_data["d"] = d;
    ctx->saved_data["s"] = s;
    return scalar_result(d / s, current);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &target = saved[0], &current = saved[1];
    const bool need_t = ctx->needs_input_grad(0), need_c = ctx->needs_input_grad(1);
    Tensor gt, gc;
    if (ctx->saved_data["fused"].toBool() && !at::GradMode::is_enabled()) {
      // d(d/s)/dc = 2 (c - t) / s;  d(d/s)/dt = -2 (c - t) / s - 2 d t / s^2.
      const double go = grads[0].item<double>(), d = ctx->saved_data["d"].toDouble(),
                   s = ctx->saved_data["s"].toDouble();
      auto tc = target.contiguous(), cc = current.contiguous();
      if (need_c) gc = torch::empty_like(cc);
      if (need_t) gt = torch::empty_like(tc);
      AT_DISPATCH_FLOATING_TYPES(tc.scalar_type(), "cnnviz_euclidean_loss_backward", [&] {
        euclidean_grad_kernel(tc.data_ptr<scalar_t>(), cc.data_ptr<scalar_t>(),
                              need_c ? gc.data_ptr<scalar_t>() : nullptr,
                              need_t ? gt.data_ptr<scalar_t>() : nullptr, tc.numel(),
                              2 * go / s, 2 * go * d / (s * s));
      });
    } else {
      auto t = compute_view(target), c = compute_view(current);
      auto diff = c - t;
      // Under create_graph the sums must be tensors in the graph; otherwise reuse them.
      const bool graph = at::GradMode::is_enabled();
      Tensor s = graph ? (t * t).sum() : scalar_result(ctx->saved_data["s"].toDouble(), t);
      Tensor d = graph ? (diff * diff).sum() : scalar_result(ctx->saved_data["d"].toDouble(), t);
      auto g = grads[0] * 2 / s * diff;
      if (need_c) gc = g.to(current.scalar_type());
      if (need_t) gt = (-g - grads[0] * 2 * d / (s * s) * t).to(target.scalar_type());
    }
    return {gt, gc, Tensor()};
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Public functions

namespace detail {

Tensor alpha_norm(const Tensor& x, double alpha, RegularizerImpl impl) {
  check_tensor(x, "alpha_norm", "x");
  check_exponent(alpha, "alpha_norm", "alpha");
  return AlphaNormFunction::apply(x, alpha, use_fused(impl, x, "alpha_norm"));
}

Tensor total_variation(const Tensor& x, double beta, RegularizerImpl impl) {
  check_tensor(x, "total_variation", "x");
  TORCH_CHECK_VALUE(x.dim() == 3 || x.dim() == 4,
                    "cnnviz: total_variation: x must be (N, C, H, W) or (C, H, W), got shape ",
                    x.sizes());
  check_exponent(beta, "total_variation", "beta");
  return TotalVariationFunction::apply(x, beta, use_fused(impl, x, "total_variation"));
}

Tensor euclidean_loss(const Tensor& target, const Tensor& current, RegularizerImpl impl) {
  check_tensor(target, "euclidean_loss", "target");
  check_tensor(current, "euclidean_loss", "current");
  TORCH_CHECK_VALUE(target.sizes() == current.sizes(),
                    "cnnviz: euclidean_loss: target and current differ in shape: ",
                    target.sizes(), " vs ", current.sizes());
  TORCH_CHECK_TYPE(target.scalar_type() == current.scalar_type(),
                   "cnnviz: euclidean_loss: target and current differ in dtype: ",
                   target.scalar_type(), " vs ", current.scalar_type());
  TORCH_CHECK_VALUE(target.device() == current.device(),
                    "cnnviz: euclidean_loss: target and current are on different devices: ",
                    target.device(), " vs ", current.device());
  return EuclideanLossFunction::apply(target, current, use_fused(impl, current, "euclidean_loss"));
}

}  // namespace detail

Tensor alpha_norm(const Tensor& x, double alpha) {
  return detail::alpha_norm(x, alpha, detail::RegularizerImpl::automatic);
}

Tensor total_variation(const Tensor& x, double beta) {
  return detail::total_variation(x, beta, detail::RegularizerImpl::automatic);
}

Tensor euclidean_loss(const Tensor& target, const Tensor& current) {
  return detail::euclidean_loss(target, current, detail::RegularizerImpl::automatic);
}

}  // namespace cnnviz
