// The GRU recurrence on a thread team with the recurrent weight packed once (packed.h, team.h):
// each thread owns a block of hidden units and computes their three gates (r, z, n), as
// lstm_packed.cpp does for the LSTM's four. Same formulas as gru.cpp's single-thread path.
#include "gru_kernels.h"

#include <algorithm>
#include <cstring>

#include "team.h"

namespace mlx_rnn {

namespace {

constexpr int kGates = 3;

struct GruForwardTeam {
  const GruForwardArgs& a;
  const float* packed;
  float* z;  // (B, nub * 3 * 32): this step's h W^T + b, panel order
  int nub;

  float* at(int b, int ub, int g) const {
    return z + int64_t(b) * nub * kGates * kPanel + (ub * kGates + g) * kPanel;
  }

  void step(int t, int ub0, int ub1) const {
    const int B = a.d.B, T = a.d.T, H = a.d.H, G = kGates * H, ldz = nub * kGates * kPanel;
    for (int b = 0; b < B; ++b) {  // z = b_hh, then += h_{t-1} W_hh^T
      for (int ub = ub0; ub < ub1; ++ub) {
        const int j0 = ub * kPanel, n = std::min(kPanel, H - j0);
        for (int g = 0; g < kGates; ++g) {
          float* dst = at(b, ub, g);
          std::memcpy(dst, a.bias + int64_t(g) * H + j0, sizeof(float) * n);
          std::fill(dst + n, dst + kPanel, 0.0f);
        }
      }
    }
    const float* h_prev = t == 0 ? a.h0 : a.hs + int64_t(t - 1) * H;
    const int ldh = t == 0 ? H : T * H;
    panel_gemm(B, H, h_prev, ldh, packed, ub0 * kGates, ub1 * kGates, z, ldz, z + ub0 * kGates * kPanel, ldz);
    float scratch[4 * kPanel];  // [r z n hw_n] of one block when nothing is saved
    for (int b = 0; b < B; ++b) {
      for (int ub = ub0; ub < ub1; ++ub) {
        const int j0 = ub * kPanel, n = std::min(kPanel, H - j0);
        float* s = a.save ? a.saved + (int64_t(t) * B + b) * 4 * H + j0 : scratch;
        gru_gates(a.xw + (int64_t(b) * T + t) * G + j0, H, at(b, ub, 0), kPanel,
                  h_prev + int64_t(b) * ldh + j0, a.hs + (int64_t(b) * T + t) * H + j0, s,
                  a.save ? H : kPanel, n, a.approx);
      }
    }
  }
};

}  // namespace

void gru_forward_packed(const GruForwardArgs& a, int threads) {
  const int B = a.d.B, T = a.d.T, H = a.d.H, nub = unit_blocks(H);
  Scratch packed(int64_t(nub) * kGates * H * kPanel);
  Scratch z(int64_t(B) * nub * kGates * kPanel);
  const GruForwardTeam team{a, packed.data(), z.data(), nub};
  run_team(threads, [&](int q, int n, Barrier& barrier) {
    int ub0, ub1;
    team_share(nub, q, n, ub0, ub1);
    pack_gate_panels(a.w, H, H, kGates, ub0, ub1, packed.data());
    for (int t = 0; t < T; ++t) {
      team.step(t, ub0, ub1);
      barrier.wait();  // h_t complete before any thread reads it
    }
    const int j0 = ub0 * kPanel, nj = std::max(0, std::min(H, ub1 * kPanel) - j0);
    copy_units(a.h_T, H, a.hs + int64_t(T - 1) * H, int64_t(T) * H, B, j0, nj);
  });
}

void gru_backward_packed(const GruBackwardIn& in, float* dxw, float* dhw, float* dh0, const Dims& d,
                         int threads) {
  const int B = d.B, T = d.T, H = d.H, G = kGates * H, nub = unit_blocks(H), hp = nub * kPanel;
  Scratch packed(int64_t(nub) * G * kPanel);
  Scratch dh(int64_t(B) * hp);  // running dh_t, (B, hp)
  run_team(threads, [&](int q, int n, Barrier& barrier) {
    int ub0, ub1;
    team_share(nub, q, n, ub0, ub1);
    pack_unit_panels(in.w, H, G, ub0, ub1, packed.data());
    const int j0 = ub0 * kPanel, j1 = std::min(H, ub1 * kPanel), nj = std::max(0, j1 - j0);
    copy_units(dh.data(), hp, in.dh_T, H, B, j0, nj);
    for (int t = T - 1; t >= 0; --t) {
      for (int b = 0; b < B; ++b) {
        const int64_t bt = int64_t(b) * T + t;
        const float* h_prev = t > 0 ? in.hs + (bt - 1) * H : in.h0 + int64_t(b) * H;
        for (int j = j0; j < j1; j += kPanel) {
          const int nb = std::min(kPanel, j1 - j);
          float* dhb = dh.data() + int64_t(b) * hp + j;
          const float* dhs_bt = in.dhs + bt * H + j;
          for (int i = 0; i < nb; ++i) dhb[i] += dhs_bt[i];
          gru_step_grads(in.saved + (int64_t(t) * B + b) * 4 * H + j, H, h_prev + j, dhb,
                         dxw + bt * G + j, dhw + bt * G + j, H, dhb, nb);
        }
      }
      barrier.wait();  // dhw_t complete before any thread multiplies by it
      // dh_{t-1} = dh z + dhw_t W_hh (dh z already in dh)
      panel_gemm(B, G, dhw + int64_t(t) * G, T * G, packed.data(), ub0, ub1, dh.data(), hp,
                 dh.data() + ub0 * kPanel, hp);
    }
    copy_units(dh0, H, dh.data(), hp, B, j0, nj);
  });
}

}  // namespace mlx_rnn
