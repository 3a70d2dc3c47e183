// The LSTM kernels behind the primitives of lstm.h: one thread with a BLAS call per step
// (lstm_kernels.cpp, every platform) or a thread team on packed weights (lstm_packed.cpp,
// x86-64). Layouts: xw, dxw (B, T, 4H); x (B, T, E); hs, dhs (B, T, H); gates (T, B, 4H)
// activated [i f g o]; cells (T, B, H); w (4H, H), w_ih (4H, E) row-major; all float32,
// row-contiguous.
#pragma once

#include "common.h"
#include "packed.h"

namespace mlx_rnn {

struct ForwardArgs {
  const float *xw, *w, *h0, *c0;  // xw: the input projection (B, T, 4H), or x (B, T, E) with w_ih
  float *hs, *h_T, *c_T;
  float *gates, *cells;  // (T, B, 4H) and (T, B, H) when save; unused otherwise
  const float* bias;     // (4H,) added to xw at every step, or nullptr
  Dims d;
  bool approx, save;
  const float* w_ih = nullptr;  // (4H, E): the input projection x W_ih^T is done here (per step
                                // on the packed path, one sgemm first on the BLAS path)
  int E = 0;
};

struct BackwardIn {
  const float *dhs, *dh_T, *dc_T, *w, *h0, *c0, *hs, *gates, *cells;
  const float* x = nullptr;  // (B, T, E): the layer's input, when dW_ih is wanted too (out.dw_ih)
  int E = 0;
};

struct BackwardOut {
  float *dxw, *dw, *dh0, *dc0;
  float* dw_ih = nullptr;  // (4H, E) = dZ^T X, with in.x
};

// dz of one step and batch row for n units; a, dz have stride `stride` between gates (4 blocks),
// dh (in), dc (in: dc_t, out: dc_{t-1}); no two of the arrays overlap.
void lstm_gate_grads(const float* a, const float* c, const float* c_prev, const float* dh,
                     float* dc, float* dz, int stride, int n, bool approx);

// Single thread, one sgemm per step.
void lstm_forward_blas(const ForwardArgs& a);  // a.w_ih: xw = x W_ih^T first, one sgemm
void lstm_backward_blas(const BackwardIn& in, const BackwardOut& out, const Dims& d, bool approx);

// dW_hh = dZ^T H_prev (one sgemm over all B T rows); with in.x also dW_ih = dZ^T X, in the same
// sgemm (dZ^T [H_prev | X]: dZ read and packed once). Needs out.dxw complete.
void lstm_weight_grad(const BackwardIn& in, const BackwardOut& out, const Dims& d);

// The same results on a team of `threads` (packed.h); the backward leaves out.dw to lstm_weight_grad.
void lstm_forward_packed(const ForwardArgs& a, int threads);
void lstm_backward_packed(const BackwardIn& in, const BackwardOut& out, const Dims& d, bool approx,
                          int threads);

}  // namespace mlx_rnn
