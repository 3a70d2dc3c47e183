// The LSTM recurrence on a thread team with the recurrent weight packed once (packed.h): each
// thread owns a block of hidden units, computes their four gates' pre-activations and their
// gate math, and the team meets once per step. Same formulas as lstm.cpp's single-thread path.
// Given W_ih, the input projection x_t W_ih^T is one more panel product per step (W_ih packed
// once too): no (B, T, 4H) projection is written and read back, and a small E (the classifier's
// 32) costs no BLAS call of poor efficiency.
#include "lstm_kernels.h"

#include <algorithm>

#include "packed.h"
#include "team.h"

namespace mlx_rnn {

namespace {

// One step's gate math for batch row b and unit block ub: z holds the block's four gate
// pre-activations, 32 each (i f g o), activated in place; n <= 32 units are real. One fused loop,
// so that the four gates' polynomial chains overlap (four separate passes over 32 floats left
// most of the time in their latency). No two arrays overlap.
template <bool kApprox>
MLX_RNN_INLINE void forward_units(float* __restrict z, const float* __restrict c_prev, float* __restrict c,
                          float* __restrict h, int n) {
  float *zi = z, *zf = z + kPanel, *zg = z + 2 * kPanel, *zo = z + 3 * kPanel;
  for (int j = 0; j < n; ++j) {
    const float i = sigmoid_act<kApprox>(zi[j]), f = sigmoid_act<kApprox>(zf[j]);
    const float g = tanh_act<kApprox>(zg[j]), o = sigmoid_act<kApprox>(zo[j]);
    zi[j] = i, zf[j] = f, zg[j] = g, zo[j] = o;
    const float cj = f * c_prev[j] + i * g;
    c[j] = cj;
    h[j] = tanh_act<kApprox>(cj) * o;
  }
}

MLX_RNN_KERNEL void forward_block(float* z, const float* c_prev, float* c, float* h, float* gates,
                                  int H, int n, bool approx) {
  if (approx) {
    n == kPanel ? forward_units<true>(z, c_prev, c, h, kPanel) : forward_units<true>(z, c_prev, c, h, n);
  } else {
    n == kPanel ? forward_units<false>(z, c_prev, c, h, kPanel) : forward_units<false>(z, c_prev, c, h, n);
  }
  if (gates != nullptr) {
    for (int g = 0; g < 4; ++g) std::memcpy(gates + int64_t(g) * H, z + g * kPanel, sizeof(float) * n);
  }
}

struct ForwardTeam {
  const ForwardArgs& a;
  const float* packed;     // W_hh's panels
  const float* packed_ih;  // W_ih's panels when the input projection is done here (a.w_ih), else unused
  const float* bias;       // the bias in panel order (nub * 4 * 32) with a.w_ih and a.bias, else nullptr
  float* z;      // (B, nub * 4 * 32): this step's pre-activations, panel order
  float* cells;  // without saving: two (B, H) cell states, steps alternate between them
  int nub;

  // z = xw[:, t] (+ bias) in panel order (zero past H).
  void copy_inputs(int t, int ub0, int ub1) const {
    const int B = a.d.B, T = a.d.T, H = a.d.H, G = 4 * H;
    for (int b = 0; b < B; ++b) {
      const float* x = a.xw + (int64_t(b) * T + t) * G;
      for (int ub = ub0; ub < ub1; ++ub) {
        const int j0 = ub * kPanel, n = std::min(kPanel, H - j0);
        for (int g = 0; g < 4; ++g) {
          float* dst = a_z(b, ub, g);
          const float* src = x + int64_t(g) * H + j0;
          if (a.bias != nullptr) {
            const float* bias = a.bias + int64_t(g) * H + j0;
            for (int j = 0; j < n; ++j) dst[j] = src[j] + bias[j];
          } else {
            std::memcpy(dst, src, sizeof(float) * n);
          }
          std::fill(dst + n, dst + kPanel, 0.0f);
        }
      }
    }
  }

  // z = xw[:, t] + h_{t-1} W_hh^T for the units of [ub0, ub1); with a.w_ih, xw[:, t] is
  // bias + x_t W_ih^T, one more panel product (the rows of x[:, t] are T E apart).
  void products(int t, int ub0, int ub1) const {
    const int H = a.d.H, ldz = nub * 4 * kPanel;
    float* z_own = z + ub0 * 4 * kPanel;
    if (a.w_ih != nullptr) {
      const float* init = bias != nullptr ? bias + ub0 * 4 * kPanel : nullptr;  // every row: the bias
      panel_gemm(a.d.B, a.E, a.xw + int64_t(t) * a.E, a.d.T * a.E, packed_ih, ub0 * 4, ub1 * 4, z, ldz,
                 init, 0);
    } else {
      copy_inputs(t, ub0, ub1);
    }
    const float* h_prev = t == 0 ? a.h0 : a.hs + int64_t(t - 1) * H;
    panel_gemm(a.d.B, H, h_prev, t == 0 ? H : a.d.T * H, packed, ub0 * 4, ub1 * 4, z, ldz, z_own, ldz);
  }

  void step(int t, int ub0, int ub1) const {
    const int B = a.d.B, T = a.d.T, H = a.d.H, G = 4 * H;
    products(t, ub0, ub1);
    for (int b = 0; b < B; ++b) {
      for (int ub = ub0; ub < ub1; ++ub) {
        const int j0 = ub * kPanel, n = std::min(kPanel, H - j0);
        const int64_t bj = int64_t(b) * H + j0;
        const float* c_prev = t == 0 ? a.c0 + bj : cell_state(t - 1) + bj;
        float* c = cell_state(t) + bj;
        float* gates = a.save ? a.gates + (int64_t(t) * B + b) * G + j0 : nullptr;
        forward_block(a_z(b, ub, 0), c_prev, c, a.hs + (int64_t(b) * T + t) * H + j0, gates, H, n,
                      a.approx);
      }
    }
  }

  float* cell_state(int t) const {
    const int64_t size = int64_t(a.d.B) * a.d.H;
    return a.save ? a.cells + t * size : cells + (t % 2) * size;
  }

  float* a_z(int b, int ub, int g) const {
    return z + int64_t(b) * nub * 4 * kPanel + (ub * 4 + g) * kPanel;
  }
};

}  // namespace

void lstm_forward_packed(const ForwardArgs& a, int threads) {
  const int B = a.d.B, T = a.d.T, H = a.d.H, nub = unit_blocks(H);
  const bool fused = a.w_ih != nullptr, fused_bias = fused && a.bias != nullptr;
  Scratch packed(int64_t(nub) * 4 * H * kPanel);
  Scratch packed_ih(fused ? int64_t(nub) * 4 * a.E * kPanel : 1);
  Scratch bias(fused_bias ? int64_t(nub) * 4 * kPanel : 1);
  Scratch z(int64_t(B) * nub * 4 * kPanel);
  Scratch cells(a.save ? 1 : 2 * int64_t(B) * H);
  const ForwardTeam team{a, packed.data(), packed_ih.data(), fused_bias ? bias.data() : nullptr, z.data(),
                         cells.data(), nub};
  run_team(threads, [&](int q, int n, Barrier& barrier) {
    int ub0, ub1;
    team_share(nub, q, n, ub0, ub1);
    pack_gate_panels(a.w, H, H, 4, ub0, ub1, packed.data());  // each thread packs the panels it reads
    if (fused) pack_gate_panels(a.w_ih, H, a.E, 4, ub0, ub1, packed_ih.data());
    if (fused_bias) pack_gate_bias(a.bias, H, 4, ub0, ub1, bias.data());
    for (int t = 0; t < T; ++t) {
      team.step(t, ub0, ub1);
      barrier.wait();  // h_t complete before any thread reads it
    }
    const int j0 = ub0 * kPanel, nj = std::max(0, std::min(H, ub1 * kPanel) - j0);
    copy_units(a.c_T, H, team.cell_state(T - 1), H, B, j0, nj);
    copy_units(a.h_T, H, a.hs + int64_t(T - 1) * H, int64_t(T) * H, B, j0, nj);
  });
}

void lstm_backward_packed(const BackwardIn& in, const BackwardOut& out, const Dims& d, bool approx,
                          int threads) {
  const int B = d.B, T = d.T, H = d.H, G = 4 * H, nub = unit_blocks(H), hp = nub * kPanel;
  Scratch packed(int64_t(nub) * G * kPanel);
  Scratch dh(int64_t(B) * hp);  // running dh_t, (B, hp)
  run_team(threads, [&](int q, int n, Barrier& barrier) {
    int ub0, ub1;
    team_share(nub, q, n, ub0, ub1);
    pack_unit_panels(in.w, H, G, ub0, ub1, packed.data());
    const int j0 = ub0 * kPanel, j1 = std::min(H, ub1 * kPanel), nj = std::max(0, j1 - j0);
    copy_units(dh.data(), hp, in.dh_T, H, B, j0, nj);
    copy_units(out.dc0, H, in.dc_T, H, B, j0, nj);
    for (int t = T - 1; t >= 0; --t) {
      for (int b = 0; b < B; ++b) {
        for (int j = j0; j < j1; j += kPanel) {
          const int nb = std::min(kPanel, j1 - j);
          float* dhb = dh.data() + int64_t(b) * hp + j;
          const float* dhs_bt = in.dhs + (int64_t(b) * T + t) * H + j;
          for (int i = 0; i < nb; ++i) dhb[i] += dhs_bt[i];
          const float* cp = t > 0 ? in.cells + int64_t(t - 1) * B * H : in.c0;
          lstm_gate_grads(in.gates + (int64_t(t) * B + b) * G + j, in.cells + (int64_t(t) * B + b) * H + j,
                          cp + int64_t(b) * H + j, dhb, out.dc0 + int64_t(b) * H + j,
                          out.dxw + (int64_t(b) * T + t) * G + j, H, nb, approx);
        }
      }
      barrier.wait();  // dz_t complete before any thread multiplies by it
      panel_gemm(B, G, out.dxw + int64_t(t) * G, T * G, packed.data(), ub0, ub1, dh.data(), hp, nullptr, 0);
    }
    copy_units(out.dh0, H, dh.data(), hp, B, j0, nj);
  });
}

}  // namespace mlx_rnn
