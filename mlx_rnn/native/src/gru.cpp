// Native GRU recurrence: the single-thread kernels, the two primitives and their ops.
#include "gru.h"

#include "gru_kernels.h"

#include <cstring>
#include <stdexcept>


namespace mlx_rnn {

namespace {

template <bool kApprox>
MLX_RNN_INLINE void gates_impl(const float* __restrict x, int xs, const float* __restrict hw, int hs_,
                               const float* __restrict hp, float* __restrict h, float* __restrict s,
                               int ss, int n) {
  for (int j = 0; j < n; ++j) {  // one fused loop, as lstm_packed.cpp's forward_units
    const float r = sigmoid_act<kApprox>(x[j] + hw[j]);
    const float z = sigmoid_act<kApprox>(x[xs + j] + hw[hs_ + j]);
    const float hn = hw[2 * hs_ + j];
    const float nv = tanh_act<kApprox>(x[2 * xs + j] + r * hn);
    s[j] = r, s[ss + j] = z, s[2 * ss + j] = nv, s[3 * ss + j] = hn;
    h[j] = (1.0f - z) * nv + z * hp[j];
  }
}

}  // namespace

MLX_RNN_KERNEL void gru_gates(const float* x, int xs, const float* hw, int hs_, const float* hp,
                              float* h, float* s, int ss, int n, bool approx) {
  if (approx) {
    gates_impl<true>(x, xs, hw, hs_, hp, h, s, ss, n);
  } else {
    gates_impl<false>(x, xs, hw, hs_, hp, h, s, ss, n);
  }
}

namespace {

MLX_RNN_KERNEL void gru_forward_kernel(const GruForwardArgs& a) {
  const int B = a.d.B, T = a.d.T, H = a.d.H, G = 3 * a.d.H;
  std::vector<float> hw(int64_t(B) * G), scratch(a.save ? 0 : 4 * H);
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) std::memcpy(hw.data() + int64_t(b) * G, a.bias, sizeof(float) * G);
    const float* h_prev = t == 0 ? a.h0 : a.hs + int64_t(t - 1) * H;
    const int ldh = t == 0 ? H : T * H;
    sgemm(false, true, B, G, H, 1.0f, h_prev, ldh, a.w, H, 1.0f, hw.data(), G);
    for (int b = 0; b < B; ++b) {
      float* s = a.save ? a.saved + (int64_t(t) * B + b) * 4 * H : scratch.data();
      gru_gates(a.xw + (int64_t(b) * T + t) * G, H, hw.data() + int64_t(b) * G, H,
                h_prev + int64_t(b) * ldh, a.hs + (int64_t(b) * T + t) * H, s, H, H, a.approx);
    }
  }
  for (int b = 0; b < B; ++b) {
    std::memcpy(a.h_T + int64_t(b) * H, a.hs + (int64_t(b) * T + T - 1) * H, sizeof(float) * H);
  }
}

}  // namespace

MLX_RNN_KERNEL void gru_step_grads(const float* s, int ss, const float* hp, const float* dh, float* dx,
                                   float* dhw, int ds, float* dh_direct, int n) {
  const float *r = s, *z = s + ss, *nv = s + 2 * ss, *hn = s + 3 * ss;
  for (int j = 0; j < n; ++j) {
    const float dan = dh[j] * (1.0f - z[j]) * (1.0f - nv[j] * nv[j]);
    const float dar = dan * hn[j] * r[j] * (1.0f - r[j]);
    const float daz = dh[j] * (hp[j] - nv[j]) * z[j] * (1.0f - z[j]);
    dx[j] = dar;
    dx[ds + j] = daz;
    dx[2 * ds + j] = dan;
    dhw[j] = dar;
    dhw[ds + j] = daz;
    dhw[2 * ds + j] = dan * r[j];
    dh_direct[j] = dh[j] * z[j];
  }
}

namespace {

// H_prev (B, T, H): H_prev[b, t] = t ? hs[b, t-1] : h0[b].
std::vector<float> previous_states(const GruBackwardIn& in, const Dims& d) {
  const int B = d.B, T = d.T, H = d.H;
  std::vector<float> h_prev(int64_t(B) * T * H);
  for (int b = 0; b < B; ++b) {
    float* dst = h_prev.data() + int64_t(b) * T * H;
    std::memcpy(dst, in.h0 + int64_t(b) * H, sizeof(float) * H);
    if (T > 1) std::memcpy(dst + H, in.hs + int64_t(b) * T * H, sizeof(float) * (T - 1) * H);
  }
  return h_prev;
}

MLX_RNN_KERNEL void gru_backward_blas(const GruBackwardIn& in, float* dxw, float* dhw, float* dh0,
                                      const Dims& d) {
  const int B = d.B, T = d.T, H = d.H, G = 3 * d.H;
  std::vector<float> dh(int64_t(B) * H);
  const std::vector<float> h_prev = previous_states(in, d);
  std::memcpy(dh.data(), in.dh_T, sizeof(float) * B * H);
  for (int t = T - 1; t >= 0; --t) {
    for (int b = 0; b < B; ++b) {
      float* dhb = dh.data() + int64_t(b) * H;
      const float* dhs_bt = in.dhs + (int64_t(b) * T + t) * H;
      for (int j = 0; j < H; ++j) dhb[j] += dhs_bt[j];
      const int64_t bt = int64_t(b) * T + t;
      gru_step_grads(in.saved + (int64_t(t) * B + b) * 4 * H, H, h_prev.data() + bt * H, dhb,
                     dxw + bt * G, dhw + bt * G, H, dhb, H);
    }
    // dh_{t-1} = dh z + dhw_t W_hh
    sgemm(false, false, B, H, G, 1.0f, dhw + int64_t(t) * G, T * G, in.w, H, 1.0f, dh.data(), H);
  }
  std::memcpy(dh0, dh.data(), sizeof(float) * B * H);
}

// dW_hh = dHW^T H_prev (one sgemm), db_hh = the column sums of dHW.
void gru_weight_grads(const GruBackwardIn& in, const float* dhw, float* dw, float* db, const Dims& d) {
  const int B = d.B, T = d.T, H = d.H, G = 3 * d.H;
  const std::vector<float> h_prev = previous_states(in, d);
  sgemm(true, false, G, H, B * T, 1.0f, dhw, G, h_prev.data(), H, 0.0f, dw, H);
  for (int j = 0; j < G; ++j) db[j] = 0.0f;
  for (int64_t r = 0; r < int64_t(B) * T; ++r) {
    const float* row = dhw + r * G;
    for (int j = 0; j < G; ++j) db[j] += row[j];
  }
}

}  // namespace

void GRUForward::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  allocate(outputs);
  const auto& xw = inputs[0];
  const Dims d = {int(xw.shape(0)), int(xw.shape(1)), int(xw.shape(2) / 3)};
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  const GruForwardArgs args{xw.data<float>(), inputs[1].data<float>(), inputs[2].data<float>(),
                            inputs[3].data<float>(), outputs[0].data<float>(), outputs[1].data<float>(),
                            outputs[2].data<float>(), d, approx_, save_};
  enc.dispatch([args]() {
    const int team = packed_team_size(args.d, 3);
    if (team > 0) {
      gru_forward_packed(args, team);
    } else {
      gru_forward_kernel(args);
    }
  });
}

std::vector<mx::array> GRUForward::vjp(const std::vector<mx::array>& primals,
                                       const std::vector<mx::array>& cotangents,
                                       const std::vector<int>& argnums,
                                       const std::vector<mx::array>& outputs) {
  const auto& xw = primals[0];
  const auto& w = primals[1];
  const auto& h0 = primals[3];
  std::vector<mx::array> fwd = outputs;
  if (!save_) fwd = gru_forward(xw, w, primals[2], h0, approx_, true, stream());
  // (dxw, dw_hh, db_hh, dh0), in the order of the primals
  auto grads = gru_backward(cotangents[0], cotangents[1], w, h0, fwd[0], fwd[2], stream());
  std::vector<mx::array> out;
  for (int i : argnums) out.push_back(grads[i]);
  return out;
}

std::vector<mx::Shape> GRUForward::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& xw = inputs[0];
  const int B = xw.shape(0), T = xw.shape(1), H = xw.shape(2) / 3;
  if (!save_) return {{B, T, H}, {B, H}, {0}};
  return {{B, T, H}, {B, H}, {T, B, 4 * H}};
}

void GRUBackward::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  allocate(outputs);
  const auto& hs = inputs[4];
  const Dims d = {int(hs.shape(0)), int(hs.shape(1)), int(hs.shape(2))};
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  const GruBackwardIn in{inputs[0].data<float>(), inputs[1].data<float>(), inputs[2].data<float>(),
                         inputs[3].data<float>(), inputs[4].data<float>(), inputs[5].data<float>()};
  enc.dispatch([in, dxw = outputs[0].data<float>(), dw = outputs[1].data<float>(),
                db = outputs[2].data<float>(), dh0 = outputs[3].data<float>(), d]() {
    std::vector<float> dhw(int64_t(d.B) * d.T * 3 * d.H);
    const int team = packed_team_size(d, 3);
    if (team > 0) {
      gru_backward_packed(in, dxw, dhw.data(), dh0, d, team);
    } else {
      gru_backward_blas(in, dxw, dhw.data(), dh0, d);
    }
    gru_weight_grads(in, dhw.data(), dw, db, d);
  });
}

std::vector<mx::Shape> GRUBackward::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& hs = inputs[4];
  const int B = hs.shape(0), T = hs.shape(1), H = hs.shape(2);
  return {{B, T, 3 * H}, {3 * H, H}, {3 * H}, {B, H}};
}

std::vector<mx::array> gru_forward(const mx::array& xw, const mx::array& w_hh,
                                   const mx::array& b_hh, const mx::array& h0, bool approx,
                                   bool save, mx::StreamOrDevice s) {
  const char* op = "gru_forward";
  auto stream = mx::to_stream(s);
  const auto [B, T, H] = check_sequence(op, "xw", xw, 3);
  (void)T;
  check_shape(op, "w_hh", w_hh, {3 * H, H});
  check_shape(op, "b_hh", b_hh, {3 * H});
  check_shape(op, "h0", h0, {B, H});
  return make_outputs(op, std::make_shared<GRUForward>(stream, approx, save), {xw, w_hh, b_hh, h0},
                      stream);
}

std::vector<mx::array> gru_backward(const mx::array& dhs, const mx::array& dh_T,
                                    const mx::array& w_hh, const mx::array& h0,
                                    const mx::array& hs, const mx::array& saved,
                                    mx::StreamOrDevice s) {
  const char* op = "gru_backward";
  auto stream = mx::to_stream(s);
  const auto [B, T, H] = check_sequence(op, "hs", hs, 1);
  check_shape(op, "dhs", dhs, {B, T, H});
  check_shape(op, "dh_T", dh_T, {B, H});
  check_shape(op, "w_hh", w_hh, {3 * H, H});
  check_shape(op, "h0", h0, {B, H});
  check_shape(op, "saved", saved, {T, B, 4 * H});
  return make_outputs(op, std::make_shared<GRUBackward>(stream), {dhs, dh_T, w_hh, h0, hs, saved},
                      stream);
}

}  // namespace mlx_rnn
