// The peak FMA rate: independent chains of vector FMAs (acc = acc * a + b) in registers, enough
// of them (12) to cover the FMA latency on every x86 core of the last decade (4-5 cycles at up to
// two FMAs per cycle), so the FMA units, not the latency, set the rate. No memory is touched.
#include "peak.h"

#include "packed.h"
#include "team.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MLX_RNN_X86 1
#endif

namespace mlx_rnn {

namespace {

constexpr int kChains = 12;

#ifdef MLX_RNN_X86
__attribute__((target("avx512f"))) float chains_avx512(int64_t iterations) {
  __m512 acc[kChains];
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
#pragma GCC unroll 12
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
#pragma GCC unroll 12
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) float chains_avx2(int64_t iterations) {
  __m256 acc[kChains];
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
#pragma GCC unroll 12
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(float(i));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 sum = acc[0];
#pragma GCC unroll 12
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}
#endif

}  // namespace

std::pair<double, int> fma_peak_gflops(int threads, int64_t iterations) {
  if (threads < 1) throw std::invalid_argument("fma_peak_gflops: threads must be >= 1, got " + std::to_string(threads));
  if (iterations < 1) {
    throw std::invalid_argument("fma_peak_gflops: iterations must be >= 1, got " + std::to_string(iterations));
  }
  const int width = packed_vector_width();
  if (width == 0) return {0.0, 0};
  std::vector<float> sink(threads, 0.0f);
  double seconds = 0.0;
  int team = 1;
  run_team(threads, [&](int q, int size, Barrier& barrier) {
    barrier.wait();
    const auto t0 = std::chrono::steady_clock::now();
#ifdef MLX_RNN_X86
    sink[q] = width == 16 ? chains_avx512(iterations) : chains_avx2(iterations);
#endif
    barrier.wait();
    if (q == 0) {
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      team = size;
    }
  });
  volatile float keep = 0.0f;
  for (float s : sink) keep = keep + s;  // the chains' results are used: nothing is optimised away
  if (!(seconds > 0.0)) return {0.0, team};
  return {2.0 * width * kChains * double(iterations) * team / seconds / 1e9, team};
}

}  // namespace mlx_rnn
