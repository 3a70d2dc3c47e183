// The GRU kernels behind the primitives of gru.h: one thread with a BLAS call per step
// (gru.cpp) or a thread team on packed weights (gru_packed.cpp, x86-64), as for the LSTM
// (lstm_kernels.h). Layouts: xw, dxw (B, T, 3H) [r z n]; hs, dhs (B, T, H); saved (T, B, 4H)
// = [r, z, n, W_hn h + b_hn]; w (3H, H) row-major; all float32, row-contiguous.
#pragma once

#include "common.h"
#include "packed.h"

namespace mlx_rnn {

struct GruForwardArgs {
  const float *xw, *w, *bias, *h0;  // bias: b_hh (3H,)
  float *hs, *h_T, *saved;          // saved: unused without saving
  Dims d;
  bool approx, save;
};

struct GruBackwardIn {
  const float *dhs, *dh_T, *w, *h0, *hs, *saved;
};

// One step's gates for one batch row and n units: x and s with stride xs and ss between gates,
// hw = h W^T + b with stride hs_ (r z n); writes h and s = [r, z, n, hw_n]. Arrays do not overlap.
void gru_gates(const float* x, int xs, const float* hw, int hs_, const float* hp, float* h,
               float* s, int ss, int n, bool approx);

// One step, one batch row, n units: from dh (total dL/dh_t) and s = [r, z, n, hw_n] (stride ss)
// write dx and dhw (stride ds between gates) and dh_direct = dh z (may alias dh).
void gru_step_grads(const float* s, int ss, const float* hp, const float* dh, float* dx,
                    float* dhw, int ds, float* dh_direct, int n);

// The packed path on a team of `threads`: forward; backward up to dxw, dhw (B, T, 3H) and dh0
// (dW_hh and db_hh from dhw stay with gru.cpp).
void gru_forward_packed(const GruForwardArgs& a, int threads);
void gru_backward_packed(const GruBackwardIn& in, float* dxw, float* dhw, float* dh0, const Dims& d,
                         int threads);

}  // namespace mlx_rnn
