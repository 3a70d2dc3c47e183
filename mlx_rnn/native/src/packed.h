// The recurrent product of the native LSTM with its weight packed once per sequence
// (x86-64 with AVX2+FMA or AVX-512); the threads that share it are in team.h.
//
// Why: at the recurrence's shapes (B = 32 rows against a 512 x 2048 weight) a BLAS call packs
// the whole weight again at every step, and its threads are woken and put back for every step.
// Here the weight is packed once into 32-column panels and each team thread owns a fixed set
// of hidden units: it computes their gate pre-activations (its panels) and their gate math,
// and the team meets once per step. Same arithmetic as sgemm, summed in k order with fused
// multiply-adds (results differ from a BLAS in the last bits, like two BLAS libraries do).
#pragma once

#include <cstdint>
#include <cstring>

#include "mlx/allocator.h"

namespace mlx_rnn {

constexpr int kPanel = 32;  // columns per packed panel

// True when this CPU runs the packed kernels (x86-64 with AVX2 and FMA) and they are enabled
// (set_packed_gemm; default on).
bool packed_gemm_available();
// Floats per vector of the micro-kernel this CPU runs: 16 (AVX-512), 8 (AVX2 + FMA), 0 (none).
int packed_vector_width();
bool packed_gemm_enabled();
void set_packed_gemm(bool on);

// C (m x 32 per panel, ldc) = C0 + A (m x k, lda) * panel, for the panels [p0, p1) of P (each
// k x 32 floats, panel q at P + q * k * 32, written to C + q * 32). C0 (rows ld0 apart) holds
// panel p0's initial values, panel q's at c0 + (q - p0) * 32; c0 may alias C; nullptr means
// zero. Requires packed_gemm_available().
void panel_gemm(int m, int k, const float* a, int lda, const float* p, int p0, int p1, float* c,
                int ldc, const float* c0, int64_t ld0);

// One panel from rows of a row-major matrix: panel[k' 32 + c] = src[c ld + k'] for c < rows,
// 0 for rows <= c < 32, k' < k (the transpose of a 32-row strip).
void pack_transposed(const float* src, int64_t ld, int rows, int k, float* panel);

// Sizes of a recurrence: batch rows, time steps, hidden units.
struct Dims {
  int B, T, H;
};

// Team size for the packed path at these dimensions (gates per unit: 4 LSTM, 3 GRU), 0 when it
// does not run (not available, disabled, or T < 4, where packing the weight does not pay).
int packed_team_size(const Dims& d, int gates);

// Blocks of 32 hidden units: unit block ub holds units [32 ub, 32 ub + 32) (those past H are
// padding, with zero weights).
inline int unit_blocks(int H) { return (H + kPanel - 1) / kPanel; }

// Panels of a weight W (gates H, k) for the product h W^T (k = H: the recurrent weight; k = E:
// an input weight), grouped by unit block: panel ub * gates + g holds, for k' < k, the 32
// weights W[g H + 32 ub + c, k']. So the panels of one unit block (all its gates) are
// contiguous. Writes the panels of [ub0, ub1).
void pack_gate_panels(const float* w, int H, int k, int gates, int ub0, int ub1, float* packed);

// A bias (gates H,) in the same panel order, zero past H: panel ub * gates + g holds
// bias[g H + 32 ub + c]. Writes the panels of [ub0, ub1).
void pack_gate_bias(const float* bias, int H, int gates, int ub0, int ub1, float* packed);

// Panels of W (rows, H) for the product dz W: panel ub holds, for k < rows, W[k, 32 ub + c].
void pack_unit_panels(const float* w, int H, int rows, int ub0, int ub1, float* packed);

// Columns [j0, j0 + n) of `rows` rows: dst[r ldd + j] = src[r lds + j] (a team thread's units).
inline void copy_units(float* dst, int64_t ldd, const float* src, int64_t lds, int rows, int j0, int n) {
  for (int r = 0; r < rows && n > 0; ++r) {
    std::memcpy(dst + r * ldd + j0, src + r * lds + j0, sizeof(float) * n);
  }
}

// Float buffer from MLX's allocator (pooled), uninitialised, freed on scope exit.
class Scratch {
 public:
  explicit Scratch(int64_t n);
  float* data() { return ptr_; }

 private:
  mlx::core::allocator::Data data_;
  float* ptr_;
};

}  // namespace mlx_rnn
