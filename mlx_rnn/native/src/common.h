// Shared pieces of the native recurrences: BLAS, activations, argument checks.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mlx/array.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"
#include "mlx/backend/cpu/encoder.h"

namespace mx = mlx::core;

// On x86-64, the hot kernels are also compiled for AVX2 and the loader picks the variant the
// CPU supports (no FMA contraction: the results are the same bits on every x86 CPU).
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define MLX_RNN_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define MLX_RNN_KERNEL
#endif

// For helpers of the hot kernels: inlined into each clone, so they take its instruction set
// (a helper compiled on its own would get the baseline SSE2 code).
#if defined(__GNUC__)
#define MLX_RNN_INLINE inline __attribute__((always_inline))
#else
#define MLX_RNN_INLINE inline
#endif

namespace mlx_rnn {

// C = alpha op(A) op(B) + beta C, row-major, float32 (CBLAS semantics).
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc);

// tanh by Eigen's rational approximation (generic_fast_tanh_float: x P(x^2) / Q(x^2),
// degrees 13/6, clamped to |x| <= 7.9053); |error| <= 5e-7 against float64. NaN stays NaN
// (both comparisons are false). The same function as mlx_rnn/lstm_op.py's training path.
MLX_RNN_INLINE float tanh_approx(float x) {
  constexpr float k = 7.90531110763549805f;
  x = x < -k ? -k : (x > k ? k : x);
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

// sigmoid(x) = (1 + tanh(x / 2)) / 2; |error| <= 3e-7.
MLX_RNN_INLINE float sigmoid_approx(float x) {
  return 0.5f * tanh_approx(0.5f * x) + 0.5f;
}

// exp(x) by Cephes' expf (range reduction x = n ln2 + r, degree-6 polynomial in r, 2^n from
// the exponent bits); within 2 ulp of the true value, vectorisable (no library call). Inputs
// are clamped to [-87.3, 88.4]: exp underflows to FLT_MIN there and overflows to 2.2e38.
MLX_RNN_INLINE float exp_accurate(float x) {
  constexpr float hi = 88.3762626647949f, lo = -87.3365447504f;
  x = x < lo ? lo : (x > hi ? hi : x);
  constexpr float shifter = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// sigmoid(x) = 1 / (1 + exp(-x)); within 2-3 ulp (evaluation mode).
MLX_RNN_INLINE float sigmoid_exact(float x) {
  return 1.0f / (1.0f + exp_accurate(-x));
}

// tanh(x): Cephes' tanhf, an odd polynomial for |x| < 0.625 and 1 - 2 / (exp(2|x|) + 1) above
// (sign restored); within 3 ulp, vectorisable. NaN stays NaN.
MLX_RNN_INLINE float tanh_exact(float x) {
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float ax = x < 0.0f ? -x : x;
  const float big = 1.0f - 2.0f / (exp_accurate(2.0f * ax) + 1.0f);
  const float signed_big = x < 0.0f ? -big : big;
  return ax < 0.625f ? small : signed_big;
}

// The two activations of one mode: kApprox for training, else evaluation (as approx below).
template <bool kApprox>
MLX_RNN_INLINE float tanh_act(float x) {
  return kApprox ? tanh_approx(x) : tanh_exact(x);
}

template <bool kApprox>
MLX_RNN_INLINE float sigmoid_act(float x) {
  return kApprox ? sigmoid_approx(x) : sigmoid_exact(x);
}

// In-place activations over n contiguous floats.
MLX_RNN_INLINE void tanh_inplace(float* x, int n, bool approx) {
  if (approx) {
    for (int j = 0; j < n; ++j) x[j] = tanh_approx(x[j]);
  } else {
    for (int j = 0; j < n; ++j) x[j] = tanh_exact(x[j]);
  }
}

MLX_RNN_INLINE void sigmoid_inplace(float* x, int n, bool approx) {
  if (approx) {
    for (int j = 0; j < n; ++j) x[j] = sigmoid_approx(x[j]);
  } else {
    for (int j = 0; j < n; ++j) x[j] = sigmoid_exact(x[j]);
  }
}

// Threads the elementwise kernels may use (AdamW, the sum of squares, dropout masks); set from
// Python ($MLX_RNN_NUM_THREADS, default the usable CPUs: mlx_rnn/native/__init__.py). n < 1 means 1.
int num_threads();
void set_num_threads(int n);

// fn(begin, end) over [0, n), split into at most num_threads() chunks of at least min_chunk
// elements (chunk bounds are multiples of 64); chunk 0 runs on the calling thread. fn must not throw.
void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn);

// Base of the project's primitives: the recurrences' two flags (approximate activations,
// saved activations), equivalence by type and flags (for mx.compile), and no GPU kernel.
class CpuPrimitive : public mx::Primitive {
 public:
  CpuPrimitive(mx::Stream stream, bool approx, bool save)
      : mx::Primitive(stream), approx_(approx), save_(save) {}
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  bool is_equivalent(const mx::Primitive& other) const override;

 protected:
  bool approx_, save_;
};

// Before a CPU kernel: check the inputs are row-contiguous, register inputs and outputs with
// the stream's command encoder and return it (outputs must be allocated first).
mx::cpu::CommandEncoder& begin_cpu_eval(mx::Primitive& p, const std::vector<mx::array>& inputs,
                                        std::vector<mx::array>& outputs);

// Argument checks: throw std::invalid_argument (a Python ValueError) with the op's name.
void check_float32_cpu(const char* op, const std::vector<mx::array>& arrays, mx::Stream s);
void check_shape(const char* op, const char* what, const mx::array& a, const mx::Shape& want);
std::string shape_str(const mx::Shape& shape);

// The op's outputs: checks float32 and the CPU stream, makes the inputs row-contiguous, and
// builds the float32 output arrays of prim (shapes from prim->output_shapes).
std::vector<mx::array> make_outputs(const char* op, std::shared_ptr<mx::Primitive> prim,
                                    const std::vector<mx::array>& inputs, mx::Stream s);

// A (B, T, gates * H) sequence with B, T, H >= 1 (gates = 1 for hidden states); returns {B, T, H}.
std::array<int, 3> check_sequence(const char* op, const char* what, const mx::array& a, int gates);

// The inputs as row-contiguous arrays (a no-op for arrays that already are).
std::vector<mx::array> contiguous_all(const std::vector<mx::array>& arrays, mx::Stream s);

// Allocate every output's buffer (row-contiguous).
void allocate(std::vector<mx::array>& outputs);

}  // namespace mlx_rnn
