// Single-thread LSTM kernels: the loop over t with one sgemm per step (every platform).
#include "lstm_kernels.h"

#include <cstring>

namespace mlx_rnn {

// Forward over all T steps. Without saving, gates and cells are one (B, 4H) and (B, H)
// scratch block (the cell state is updated in place, unit by unit).
MLX_RNN_KERNEL void lstm_forward_kernel(const ForwardArgs& p, float* gates, float* cells) {
  const int B = p.d.B, T = p.d.T, H = p.d.H, G = 4 * p.d.H;
  const bool approx = p.approx;
  const float* c_prev = p.c0;
  for (int t = 0; t < T; ++t) {
    float* a = gates + (p.save ? int64_t(t) * B * G : 0);
    float* c = cells + (p.save ? int64_t(t) * B * H : 0);
    for (int b = 0; b < B; ++b) {
      float* ab = a + int64_t(b) * G;
      std::memcpy(ab, p.xw + (int64_t(b) * T + t) * G, sizeof(float) * G);
      if (p.bias != nullptr) {
        for (int j = 0; j < G; ++j) ab[j] += p.bias[j];
      }
    }
    // a += h_{t-1} W_hh^T: h_{t-1} is h0 (ld H) or hs[:, t-1] (ld T*H)
    const float* h_prev = t == 0 ? p.h0 : p.hs + int64_t(t - 1) * H;
    sgemm(false, true, B, G, H, 1.0f, h_prev, t == 0 ? H : T * H, p.w, H, 1.0f, a, G);
    for (int b = 0; b < B; ++b) {
      float* ab = a + int64_t(b) * G;
      sigmoid_inplace(ab, 2 * H, approx);        // i, f
      tanh_inplace(ab + 2 * H, H, approx);       // g
      sigmoid_inplace(ab + 3 * H, H, approx);    // o
      const float* cp = c_prev + int64_t(b) * H;
      float* cb = c + int64_t(b) * H;
      float* hb = p.hs + (int64_t(b) * T + t) * H;
      for (int j = 0; j < H; ++j) cb[j] = ab[H + j] * cp[j] + ab[j] * ab[2 * H + j];
      for (int j = 0; j < H; ++j) hb[j] = cb[j];
      tanh_inplace(hb, H, approx);
      for (int j = 0; j < H; ++j) hb[j] *= ab[3 * H + j];
    }
    c_prev = c;
  }
  std::memcpy(p.c_T, c_prev, sizeof(float) * B * H);
  for (int b = 0; b < B; ++b) {
    std::memcpy(p.h_T + int64_t(b) * H, p.hs + (int64_t(b) * T + T - 1) * H, sizeof(float) * H);
  }
}

void lstm_forward_blas(const ForwardArgs& a) {
  if (a.w_ih != nullptr) {  // xw = x W_ih^T (one sgemm over all B T rows), then the loop below
    const int rows = a.d.B * a.d.T, G = 4 * a.d.H;
    Scratch xw(int64_t(rows) * G);
    sgemm(false, true, rows, G, a.E, 1.0f, a.xw, a.E, a.w_ih, a.E, 0.0f, xw.data(), G);
    ForwardArgs projected = a;
    projected.xw = xw.data();
    projected.w_ih = nullptr;
    return lstm_forward_blas(projected);
  }
  std::vector<float> ga, ce;
  float* g = a.gates;
  float* c = a.cells;
  if (!a.save) {
    ga.resize(int64_t(a.d.B) * 4 * a.d.H);
    ce.resize(int64_t(a.d.B) * a.d.H);
    g = ga.data();
    c = ce.data();
  }
  lstm_forward_kernel(a, g, c);
}

namespace {

// One fused loop, so that the activations of the unit's gates overlap (see lstm_gate_grads).
template <bool kApprox>
MLX_RNN_INLINE void gate_grads(const float* __restrict a, const float* __restrict c,
                       const float* __restrict c_prev, const float* __restrict dh,
                       float* __restrict dc, float* __restrict dz, int S, int n) {
  for (int j = 0; j < n; ++j) {
    const float i = a[j], f = a[S + j], g = a[2 * S + j], o = a[3 * S + j];
    const float tc = tanh_act<kApprox>(c[j]);
    const float dcv = dc[j] + dh[j] * o * (1.0f - tc * tc);
    dz[j] = dcv * g * i * (1.0f - i);
    dz[S + j] = dcv * c_prev[j] * f * (1.0f - f);
    dz[2 * S + j] = dcv * i * (1.0f - g * g);
    dz[3 * S + j] = dh[j] * tc * o * (1.0f - o);
    dc[j] = dcv * f;
  }
}

}  // namespace

MLX_RNN_KERNEL void lstm_gate_grads(const float* a, const float* c, const float* c_prev,
                                    const float* dh, float* dc, float* dz, int stride, int n,
                                    bool approx) {
  if (approx) {
    gate_grads<true>(a, c, c_prev, dh, dc, dz, stride, n);
  } else {
    gate_grads<false>(a, c, c_prev, dh, dc, dz, stride, n);
  }
}

MLX_RNN_KERNEL void lstm_backward_blas(const BackwardIn& in, const BackwardOut& out, const Dims& d,
                                       bool approx) {
  const int B = d.B, T = d.T, H = d.H, G = 4 * d.H;
  float* dh = out.dh0;  // running dh_t, ends as dh0
  float* dc = out.dc0;  // running dc, ends as dc0
  std::memcpy(dh, in.dh_T, sizeof(float) * B * H);
  std::memcpy(dc, in.dc_T, sizeof(float) * B * H);
  for (int t = T - 1; t >= 0; --t) {
    const float* a = in.gates + int64_t(t) * B * G;
    const float* c = in.cells + int64_t(t) * B * H;
    const float* cp = t > 0 ? in.cells + int64_t(t - 1) * B * H : in.c0;
    for (int b = 0; b < B; ++b) {
      float* dhb = dh + int64_t(b) * H;
      const float* dhs_bt = in.dhs + (int64_t(b) * T + t) * H;
      for (int j = 0; j < H; ++j) dhb[j] += dhs_bt[j];
      lstm_gate_grads(a + int64_t(b) * G, c + int64_t(b) * H, cp + int64_t(b) * H, dhb,
                      dc + int64_t(b) * H, out.dxw + (int64_t(b) * T + t) * G, H, H, approx);
    }
    // dh_{t-1} = dz_t W_hh (dz_t = dxw[:, t], ld T*4H)
    sgemm(false, false, B, H, G, 1.0f, out.dxw + int64_t(t) * G, T * G, in.w, H, 0.0f, dh, H);
  }
}

void lstm_weight_grad(const BackwardIn& in, const BackwardOut& out, const Dims& d) {
  // dW_hh = dZ^T H_prev with H_prev[b, t] = t ? hs[b, t-1] : h0[b]: one (4H x BT) (BT x H) sgemm;
  // with x, the rows of H_prev are followed by those of x (width H + E) and the product split
  const int B = d.B, T = d.T, H = d.H, G = 4 * d.H, E = in.x != nullptr ? in.E : 0, K = H + E;
  Scratch rows(int64_t(B) * T * K);  // [H_prev | X], (B T, H + E)
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      float* dst = rows.data() + (int64_t(b) * T + t) * K;
      std::memcpy(dst, t == 0 ? in.h0 + int64_t(b) * H : in.hs + (int64_t(b) * T + t - 1) * H, sizeof(float) * H);
      if (E > 0) std::memcpy(dst + H, in.x + (int64_t(b) * T + t) * E, sizeof(float) * E);
    }
  }
  if (E == 0) {
    sgemm(true, false, G, H, B * T, 1.0f, out.dxw, G, rows.data(), H, 0.0f, out.dw, H);
    return;
  }
  Scratch both(int64_t(G) * K);  // [dW_hh | dW_ih], (4H, H + E)
  sgemm(true, false, G, K, B * T, 1.0f, out.dxw, G, rows.data(), K, 0.0f, both.data(), K);
  for (int g = 0; g < G; ++g) {
    std::memcpy(out.dw + int64_t(g) * H, both.data() + int64_t(g) * K, sizeof(float) * H);
    std::memcpy(out.dw_ih + int64_t(g) * E, both.data() + int64_t(g) * K + H, sizeof(float) * E);
  }
}

}  // namespace mlx_rnn
