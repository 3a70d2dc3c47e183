// Native GRU recurrence: kernels, the two primitives and their ops.
#include "gru.h"

#include <cstring>
#include <stdexcept>


namespace mlx_rnn {

namespace {

struct Dims {
  int B, T, H;
};

// One step's gates for one batch row: x (3H) from xw, hw (3H) = h W^T + b; writes h (H) and,
// into s (4H), [r, z, n, hw_n].
MLX_RNN_KERNEL void gru_gates(const float* x, const float* hw, const float* hp, float* h, float* s, int H,
               bool approx) {
  float* r = s;
  float* z = s + H;
  float* n = s + 2 * H;
  for (int j = 0; j < 2 * H; ++j) r[j] = x[j] + hw[j];  // r and z pre-activations
  sigmoid_inplace(r, 2 * H, approx);
  for (int j = 0; j < H; ++j) n[j] = x[2 * H + j] + r[j] * hw[2 * H + j];
  tanh_inplace(n, H, approx);
  for (int j = 0; j < H; ++j) {
    s[3 * H + j] = hw[2 * H + j];
    h[j] = (1.0f - z[j]) * n[j] + z[j] * hp[j];
  }
}

MLX_RNN_KERNEL void gru_forward_kernel(const float* xw, const float* w, const float* bias, const float* h0,
                        float* hs, float* h_T, float* saved, Dims d, bool approx, bool save) {
  const int B = d.B, T = d.T, H = d.H, G = 3 * d.H;
  std::vector<float> hw(int64_t(B) * G), scratch(save ? 0 : 4 * H);
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) std::memcpy(hw.data() + int64_t(b) * G, bias, sizeof(float) * G);
    const float* h_prev = t == 0 ? h0 : hs + int64_t(t - 1) * H;
    const int ldh = t == 0 ? H : T * H;
    sgemm(false, true, B, G, H, 1.0f, h_prev, ldh, w, H, 1.0f, hw.data(), G);
    for (int b = 0; b < B; ++b) {
      float* s = save ? saved + (int64_t(t) * B + b) * 4 * H : scratch.data();
      gru_gates(xw + (int64_t(b) * T + t) * G, hw.data() + int64_t(b) * G,
                h_prev + int64_t(b) * ldh, hs + (int64_t(b) * T + t) * H, s, H, approx);
    }
  }
  for (int b = 0; b < B; ++b) {
    std::memcpy(h_T + int64_t(b) * H, hs + (int64_t(b) * T + T - 1) * H, sizeof(float) * H);
  }
}

// One step, one batch row: from dh (total dL/dh_t) and s = [r, z, n, hw_n] write dx (3H),
// dhw (3H) and dh_direct = dh z (the part of dh_{t-1} that skips W_hh).
MLX_RNN_KERNEL void gru_step_grads(const float* s, const float* hp, const float* dh, float* dx, float* dhw,
                    float* dh_direct, int H) {
  const float *r = s, *z = s + H, *n = s + 2 * H, *hn = s + 3 * H;
  for (int j = 0; j < H; ++j) {
    const float dan = dh[j] * (1.0f - z[j]) * (1.0f - n[j] * n[j]);
    const float dar = dan * hn[j] * r[j] * (1.0f - r[j]);
    const float daz = dh[j] * (hp[j] - n[j]) * z[j] * (1.0f - z[j]);
    dx[j] = dar;
    dx[H + j] = daz;
    dx[2 * H + j] = dan;
    dhw[j] = dar;
    dhw[H + j] = daz;
    dhw[2 * H + j] = dan * r[j];
    dh_direct[j] = dh[j] * z[j];
  }
}

struct BackwardIn {
  const float *dhs, *dh_T, *w, *h0, *hs, *saved;
};

MLX_RNN_KERNEL void gru_backward_kernel(const BackwardIn& in, float* dxw, float* dw, float* db, float* dh0,
                         Dims d) {
  const int B = d.B, T = d.T, H = d.H, G = 3 * d.H;
  std::vector<float> dhw(int64_t(B) * T * G), dh(int64_t(B) * H), h_prev(int64_t(B) * T * H);
  std::memcpy(dh.data(), in.dh_T, sizeof(float) * B * H);
  for (int b = 0; b < B; ++b) {  // H_prev[b, t] = t ? hs[b, t-1] : h0[b]
    float* dst = h_prev.data() + int64_t(b) * T * H;
    std::memcpy(dst, in.h0 + int64_t(b) * H, sizeof(float) * H);
    if (T > 1) std::memcpy(dst + H, in.hs + int64_t(b) * T * H, sizeof(float) * (T - 1) * H);
  }
  for (int t = T - 1; t >= 0; --t) {
    for (int b = 0; b < B; ++b) {
      float* dhb = dh.data() + int64_t(b) * H;
      const float* dhs_bt = in.dhs + (int64_t(b) * T + t) * H;
      for (int j = 0; j < H; ++j) dhb[j] += dhs_bt[j];
      const int64_t bt = int64_t(b) * T + t;
      gru_step_grads(in.saved + (int64_t(t) * B + b) * 4 * H, h_prev.data() + bt * H, dhb,
                     dxw + bt * G, dhw.data() + bt * G, dhb, H);
    }
    // dh_{t-1} = dh z + dhw_t W_hh
    sgemm(false, false, B, H, G, 1.0f, dhw.data() + int64_t(t) * G, T * G, in.w, H, 1.0f,
          dh.data(), H);
  }
  std::memcpy(dh0, dh.data(), sizeof(float) * B * H);
  sgemm(true, false, G, H, B * T, 1.0f, dhw.data(), G, h_prev.data(), H, 0.0f, dw, H);
  for (int j = 0; j < G; ++j) db[j] = 0.0f;
  for (int64_t r = 0; r < int64_t(B) * T; ++r) {
    const float* row = dhw.data() + r * G;
    for (int j = 0; j < G; ++j) db[j] += row[j];
  }
}

}  // namespace

void GRUForward::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  allocate(outputs);
  const auto& xw = inputs[0];
  const Dims d = {int(xw.shape(0)), int(xw.shape(1)), int(xw.shape(2) / 3)};
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  enc.dispatch([x = xw.data<float>(), w = inputs[1].data<float>(), bias = inputs[2].data<float>(),
                h0 = inputs[3].data<float>(), hs = outputs[0].data<float>(),
                h_T = outputs[1].data<float>(), saved = outputs[2].data<float>(), d,
                approx = approx_, save = save_]() {
    gru_forward_kernel(x, w, bias, h0, hs, h_T, saved, d, approx, save);
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
  BackwardIn in{inputs[0].data<float>(), inputs[1].data<float>(), inputs[2].data<float>(),
                inputs[3].data<float>(), inputs[4].data<float>(), inputs[5].data<float>()};
  enc.dispatch([in, dxw = outputs[0].data<float>(), dw = outputs[1].data<float>(),
                db = outputs[2].data<float>(), dh0 = outputs[3].data<float>(),
                d]() { gru_backward_kernel(in, dxw, dw, db, dh0, d); });
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
