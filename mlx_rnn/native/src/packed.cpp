// Packed-panel GEMM micro-kernels (AVX-512, AVX2+FMA), packing and scratch buffers.
#include "packed.h"

#include "common.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MLX_RNN_X86 1
#endif

namespace mx = mlx::core;

namespace mlx_rnn {

namespace {

std::atomic<bool> g_packed_on{true};

#ifdef MLX_RNN_X86
// The loops over a kernel's MR rows are unrolled by pragma: without it GCC 12 keeps the
// accumulators in an array on the stack and stores every one after each FMA (12 stores per step of
// k), which halved the AVX2 kernel's rate (16 against 36 GFLOP/s on one core of a 2-core AMD EPYC
// with AVX2 only, where OpenBLAS's sgemm reaches 38; docs/benchmarks.md).
#define MLX_RNN_UNROLL _Pragma("GCC unroll 16")

// MR rows x 32 columns of C; B panel rows are 32 floats (two zmm). 2 * MR accumulators.
template <int MR>
__attribute__((target("avx512f"))) void kernel_avx512(int k, const float* a, int lda,
                                                      const float* p, float* c, int ldc,
                                                      const float* c0, int64_t ld0) {
  __m512 acc[MR][2];
  MLX_RNN_UNROLL
  for (int i = 0; i < MR; ++i) {
    acc[i][0] = c0 ? _mm512_loadu_ps(c0 + i * ld0) : _mm512_setzero_ps();
    acc[i][1] = c0 ? _mm512_loadu_ps(c0 + i * ld0 + 16) : _mm512_setzero_ps();
  }
  for (int kk = 0; kk < k; ++kk) {
    const __m512 b0 = _mm512_loadu_ps(p + int64_t(kk) * kPanel);
    const __m512 b1 = _mm512_loadu_ps(p + int64_t(kk) * kPanel + 16);
    MLX_RNN_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m512 x = _mm512_set1_ps(a[int64_t(i) * lda + kk]);
      acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);
    }
  }
  MLX_RNN_UNROLL
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_ps(c + int64_t(i) * ldc, acc[i][0]);
    _mm512_storeu_ps(c + int64_t(i) * ldc + 16, acc[i][1]);
  }
}

// MR rows x 16 columns (half a panel: p and c point at its first column); two ymm per row.
template <int MR>
__attribute__((target("avx2,fma"))) void kernel_avx2(int k, const float* a, int lda,
                                                     const float* p, float* c, int ldc,
                                                     const float* c0, int64_t ld0) {
  __m256 acc[MR][2];
  MLX_RNN_UNROLL
  for (int i = 0; i < MR; ++i) {
    acc[i][0] = c0 ? _mm256_loadu_ps(c0 + i * ld0) : _mm256_setzero_ps();
    acc[i][1] = c0 ? _mm256_loadu_ps(c0 + i * ld0 + 8) : _mm256_setzero_ps();
  }
  for (int kk = 0; kk < k; ++kk) {
    const __m256 b0 = _mm256_loadu_ps(p + int64_t(kk) * kPanel);
    const __m256 b1 = _mm256_loadu_ps(p + int64_t(kk) * kPanel + 8);
    MLX_RNN_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m256 x = _mm256_broadcast_ss(a + int64_t(i) * lda + kk);
      acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
    }
  }
  MLX_RNN_UNROLL
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(c + int64_t(i) * ldc, acc[i][0]);
    _mm256_storeu_ps(c + int64_t(i) * ldc + 8, acc[i][1]);
  }
}

// Rows in blocks of at most MAX (sizes as even as possible: 32 rows -> 11 + 11 + 10), each by
// the kernel for its size, so no block runs with few accumulators.
template <int MAX, typename Kernel>
void row_blocks(int m, const Kernel& kernel) {
  const int blocks = (m + MAX - 1) / MAX;
  int row = 0;
  for (int b = 0; b < blocks; ++b) {
    const int size = (m - row) / (blocks - b);
    kernel(row, size);
    row += size;
  }
}

// Initial values of C for the block at row `row` (nullptr: zero).
inline const float* init_at(const float* c0, int64_t ld0, int row, int col) {
  return c0 ? c0 + row * ld0 + col : nullptr;
}

template <int MR = 12>
void avx512_rows(int mr, int k, const float* a, int lda, const float* p, float* c, int ldc,
                 const float* c0, int64_t ld0) {
  if constexpr (MR > 1) {
    if (mr < MR) return avx512_rows<MR - 1>(mr, k, a, lda, p, c, ldc, c0, ld0);
  }
  kernel_avx512<MR>(k, a, lda, p, c, ldc, c0, ld0);
}

template <int MR = 6>
void avx2_rows(int mr, int k, const float* a, int lda, const float* p, float* c, int ldc,
               const float* c0, int64_t ld0) {
  if constexpr (MR > 1) {
    if (mr < MR) return avx2_rows<MR - 1>(mr, k, a, lda, p, c, ldc, c0, ld0);
  }
  kernel_avx2<MR>(k, a, lda, p, c, ldc, c0, ld0);
}

// k is split into chunks of kChunk, so that a chunk of the panel (32 KiB) stays in L1 while
// every row block passes over it; C carries the partial sums between chunks.
constexpr int kChunk = 256;

void panel_avx512(int m, int k, const float* a, int lda, const float* p, float* c, int ldc,
                  const float* c0, int64_t ld0) {
  for (int k0 = 0; k0 < k; k0 += kChunk) {
    const int kc = std::min(kChunk, k - k0);
    const float* init = k0 == 0 ? c0 : c;
    const int64_t ld = k0 == 0 ? ld0 : ldc;
    row_blocks<12>(m, [&](int row, int size) {
      avx512_rows(size, kc, a + int64_t(row) * lda + k0, lda, p + int64_t(k0) * kPanel,
                  c + int64_t(row) * ldc, ldc, init_at(init, ld, row, 0), ld);
    });
  }
}

void panel_avx2(int m, int k, const float* a, int lda, const float* p, float* c, int ldc,
                const float* c0, int64_t ld0) {
  for (int k0 = 0; k0 < k; k0 += kChunk) {
    const int kc = std::min(kChunk, k - k0);
    const float* init = k0 == 0 ? c0 : c;
    const int64_t ld = k0 == 0 ? ld0 : ldc;
    for (int half = 0; half < kPanel; half += 16) {
      row_blocks<6>(m, [&](int row, int size) {
        avx2_rows(size, kc, a + int64_t(row) * lda + k0, lda, p + int64_t(k0) * kPanel + half,
                  c + int64_t(row) * ldc + half, ldc, init_at(init, ld, row, half), ld);
      });
    }
  }
}

// The 8 x 8 block at src (rows ld apart) transposed into dst (rows 32 apart).
__attribute__((target("avx2"))) inline void transpose8(const float* src, int64_t ld, float* dst) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    for (int j = 0; j < 2; ++j) {
      r[i + j] = _mm256_shuffle_ps(t[i + j], t[i + 2 + j], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 2 + j] = _mm256_shuffle_ps(t[i + j], t[i + 2 + j], _MM_SHUFFLE(3, 2, 3, 2));
    }
  }
  // r: 0 = rows 0-3 col 0 (and col 4 in the high lane) ... ; combine the lanes
  const int order[4] = {0, 2, 1, 3};  // columns 0, 1, 2, 3 of rows 0-3 in r[0], r[2], r[1], r[3]
  for (int j = 0; j < 4; ++j) {
    const __m256 lo = r[order[j]], hi = r[4 + order[j]];
    _mm256_storeu_ps(dst + j * kPanel, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(dst + (j + 4) * kPanel, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
}

__attribute__((target("avx2"))) void pack_transposed_avx2(const float* src, int64_t ld, int rows, int k,
                                                          float* panel) {
  const int k8 = k / 8 * 8;
  for (int c0 = 0; c0 < kPanel; c0 += 8) {
    if (c0 + 8 <= rows) {
      for (int kk = 0; kk < k8; kk += 8) {
        transpose8(src + int64_t(c0) * ld + kk, ld, panel + int64_t(kk) * kPanel + c0);
      }
    }
    for (int c = c0; c < c0 + 8; ++c) {
      const bool vec_done = c0 + 8 <= rows;
      for (int kk = vec_done ? k8 : 0; kk < k; ++kk) {
        panel[int64_t(kk) * kPanel + c] = c < rows ? src[int64_t(c) * ld + kk] : 0.0f;
      }
    }
  }
}

enum class Isa { none, avx2, avx512 };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::none;
}
#else
enum class Isa { none };
Isa detect_isa() { return Isa::none; }
#endif

Isa isa() {
  static const Isa value = detect_isa();
  return value;
}

}  // namespace

bool packed_gemm_available() { return isa() != Isa::none; }

int packed_vector_width() {
#ifdef MLX_RNN_X86
  if (isa() == Isa::avx512) return 16;
  if (isa() == Isa::avx2) return 8;
#endif
  return 0;
}

bool packed_gemm_enabled() { return packed_gemm_available() && g_packed_on.load(); }

void set_packed_gemm(bool on) { g_packed_on.store(on); }

void panel_gemm(int m, int k, const float* a, int lda, const float* p, int p0, int p1, float* c,
                int ldc, const float* c0, int64_t ld0) {
#ifdef MLX_RNN_X86
  for (int q = p0; q < p1; ++q) {
    const float* pq = p + int64_t(q) * k * kPanel;
    float* cq = c + int64_t(q) * kPanel;
    const float* init = c0 ? c0 + int64_t(q - p0) * kPanel : nullptr;
    if (isa() == Isa::avx512) {
      panel_avx512(m, k, a, lda, pq, cq, ldc, init, ld0);
    } else {
      panel_avx2(m, k, a, lda, pq, cq, ldc, init, ld0);
    }
  }
#else
  (void)m, (void)k, (void)a, (void)lda, (void)p, (void)p0, (void)p1, (void)c, (void)ldc, (void)c0, (void)ld0;
#endif
}

void pack_transposed(const float* src, int64_t ld, int rows, int k, float* panel) {
#ifdef MLX_RNN_X86
  pack_transposed_avx2(src, ld, rows, k, panel);
#else
  for (int kk = 0; kk < k; ++kk) {
    for (int c = 0; c < kPanel; ++c) panel[int64_t(kk) * kPanel + c] = c < rows ? src[int64_t(c) * ld + kk] : 0.0f;
  }
#endif
}

void pack_gate_panels(const float* w, int H, int k, int gates, int ub0, int ub1, float* packed) {
  for (int ub = ub0; ub < ub1; ++ub) {
    const int rows = std::min(kPanel, H - ub * kPanel);
    for (int g = 0; g < gates; ++g) {
      pack_transposed(w + (int64_t(g) * H + ub * kPanel) * k, k, rows, k,
                      packed + int64_t(ub * gates + g) * k * kPanel);
    }
  }
}

void pack_gate_bias(const float* bias, int H, int gates, int ub0, int ub1, float* packed) {
  for (int ub = ub0; ub < ub1; ++ub) {
    const int rows = std::min(kPanel, H - ub * kPanel);
    for (int g = 0; g < gates; ++g) {
      float* dst = packed + int64_t(ub * gates + g) * kPanel;
      for (int c = 0; c < kPanel; ++c) dst[c] = c < rows ? bias[int64_t(g) * H + ub * kPanel + c] : 0.0f;
    }
  }
}

void pack_unit_panels(const float* w, int H, int rows, int ub0, int ub1, float* packed) {
  for (int ub = ub0; ub < ub1; ++ub) {
    float* panel = packed + int64_t(ub) * rows * kPanel;
    const int j0 = ub * kPanel, n = std::min(kPanel, H - j0);
    for (int k = 0; k < rows; ++k) {
      float* dst = panel + int64_t(k) * kPanel;
      std::memcpy(dst, w + int64_t(k) * H + j0, sizeof(float) * n);
      std::fill(dst + n, dst + kPanel, 0.0f);
    }
  }
}

int packed_team_size(const Dims& d, int gates) {
  if (!packed_gemm_enabled() || d.T < 4) return 0;
  const int64_t flops_per_step = 2LL * d.B * gates * d.H * d.H;
  const int64_t by_work = std::max<int64_t>(1, flops_per_step / (1 << 20));
  return int(std::max<int64_t>(1, std::min<int64_t>({num_threads(), unit_blocks(d.H), by_work})));
}

Scratch::Scratch(int64_t n)
    : data_(mx::allocator::malloc(size_t(std::max<int64_t>(n, 1)) * sizeof(float))),
      ptr_(static_cast<float*>(data_.buffer().raw_ptr())) {}

}  // namespace mlx_rnn
