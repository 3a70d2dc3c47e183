// Native LSTM recurrence: kernels, the two primitives and their ops.
#include "lstm.h"

#include <cstring>
#include <stdexcept>


namespace mlx_rnn {

namespace {

struct Dims {
  int B, T, H;
};

// Forward over all T steps. gates: (T, B, 4H) when saving, else one (B, 4H) scratch row block;
// cells likewise (T, B, H) or (B, H).
MLX_RNN_KERNEL void lstm_forward_kernel(const float* xw, const float* w, const float* h0, const float* c0,
                         float* hs, float* h_T, float* c_T, float* gates, float* cells,
                         Dims d, bool approx, bool save) {
  const int B = d.B, T = d.T, H = d.H, G = 4 * d.H;
  const float* c_prev = c0;
  for (int t = 0; t < T; ++t) {
    float* a = gates + (save ? int64_t(t) * B * G : 0);
    float* c = cells + (save ? int64_t(t) * B * H : 0);
    for (int b = 0; b < B; ++b) {
      std::memcpy(a + int64_t(b) * G, xw + (int64_t(b) * T + t) * G, sizeof(float) * G);
    }
    // a += h_{t-1} W_hh^T: h_{t-1} is h0 (ld H) or hs[:, t-1] (ld T*H)
    const float* h_prev = t == 0 ? h0 : hs + int64_t(t - 1) * H;
    sgemm(false, true, B, G, H, 1.0f, h_prev, t == 0 ? H : T * H, w, H, 1.0f, a, G);
    for (int b = 0; b < B; ++b) {
      float* ab = a + int64_t(b) * G;
      sigmoid_inplace(ab, 2 * H, approx);        // i, f
      tanh_inplace(ab + 2 * H, H, approx);       // g
      sigmoid_inplace(ab + 3 * H, H, approx);    // o
      const float* cp = c_prev + int64_t(b) * H;
      float* cb = c + int64_t(b) * H;
      float* hb = hs + (int64_t(b) * T + t) * H;
      for (int j = 0; j < H; ++j) cb[j] = ab[H + j] * cp[j] + ab[j] * ab[2 * H + j];
      for (int j = 0; j < H; ++j) hb[j] = cb[j];
      tanh_inplace(hb, H, approx);
      for (int j = 0; j < H; ++j) hb[j] *= ab[3 * H + j];
    }
    c_prev = c;  // without saving, c is one scratch block updated in place (j by j)
  }
  std::memcpy(c_T, c_prev, sizeof(float) * B * H);
  for (int b = 0; b < B; ++b) {
    std::memcpy(h_T + int64_t(b) * H, hs + (int64_t(b) * T + T - 1) * H, sizeof(float) * H);
  }
}

// dz for one step and one batch row; dh (in), dc (in: dc from step t+1, out: dc_{t-1}').
MLX_RNN_KERNEL void lstm_gate_grads(const float* a, const float* c, const float* c_prev, const float* dh,
                     float* dc, float* dz, float* tc, int H, bool approx) {
  for (int j = 0; j < H; ++j) tc[j] = c[j];
  tanh_inplace(tc, H, approx);
  for (int j = 0; j < H; ++j) {
    const float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const float dcv = dc[j] + dh[j] * o * (1.0f - tc[j] * tc[j]);
    dz[j] = dcv * g * i * (1.0f - i);
    dz[H + j] = dcv * c_prev[j] * f * (1.0f - f);
    dz[2 * H + j] = dcv * i * (1.0f - g * g);
    dz[3 * H + j] = dh[j] * tc[j] * o * (1.0f - o);
    dc[j] = dcv * f;
  }
}

struct BackwardIn {
  const float *dhs, *dh_T, *dc_T, *w, *h0, *c0, *hs, *gates, *cells;
};

MLX_RNN_KERNEL void lstm_backward_kernel(const BackwardIn& in, float* dxw, float* dw, float* dh0, float* dc0,
                          Dims d, bool approx) {
  const int B = d.B, T = d.T, H = d.H, G = 4 * d.H;
  float* dh = dh0;  // running dh_t, ends as dh0
  float* dc = dc0;  // running dc, ends as dc0
  std::memcpy(dh, in.dh_T, sizeof(float) * B * H);
  std::memcpy(dc, in.dc_T, sizeof(float) * B * H);
  std::vector<float> tc(H);
  for (int t = T - 1; t >= 0; --t) {
    const float* a = in.gates + int64_t(t) * B * G;
    const float* c = in.cells + int64_t(t) * B * H;
    const float* cp = t > 0 ? in.cells + int64_t(t - 1) * B * H : in.c0;
    for (int b = 0; b < B; ++b) {
      float* dhb = dh + int64_t(b) * H;
      const float* dhs_bt = in.dhs + (int64_t(b) * T + t) * H;
      for (int j = 0; j < H; ++j) dhb[j] += dhs_bt[j];
      lstm_gate_grads(a + int64_t(b) * G, c + int64_t(b) * H, cp + int64_t(b) * H, dhb,
                      dc + int64_t(b) * H, dxw + (int64_t(b) * T + t) * G, tc.data(), H, approx);
    }
    // dh_{t-1} = dz_t W_hh (dz_t = dxw[:, t], ld T*4H)
    sgemm(false, false, B, H, G, 1.0f, dxw + int64_t(t) * G, T * G, in.w, H, 0.0f, dh, H);
  }
  // dW_hh = dZ^T H_prev with H_prev[b, t] = t ? hs[b, t-1] : h0[b]: one (4H x BT) (BT x H) sgemm
  std::vector<float> h_prev(int64_t(B) * T * H);
  for (int b = 0; b < B; ++b) {
    float* dst = h_prev.data() + int64_t(b) * T * H;
    std::memcpy(dst, in.h0 + int64_t(b) * H, sizeof(float) * H);
    if (T > 1) std::memcpy(dst + H, in.hs + int64_t(b) * T * H, sizeof(float) * (T - 1) * H);
  }
  sgemm(true, false, G, H, B * T, 1.0f, dxw, G, h_prev.data(), H, 0.0f, dw, H);
}

Dims lstm_dims(const mx::array& xw) {
  return {int(xw.shape(0)), int(xw.shape(1)), int(xw.shape(2) / 4)};
}

}  // namespace

// ----- primitives --------------------------------------------------------------------

void LSTMForward::eval_cpu(const std::vector<mx::array>& inputs,
                           std::vector<mx::array>& outputs) {
  allocate(outputs);
  const Dims d = lstm_dims(inputs[0]);
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  float* gates = outputs[3].data<float>();
  float* cells = outputs[4].data<float>();
  enc.dispatch([xw = inputs[0].data<float>(), w = inputs[1].data<float>(),
                h0 = inputs[2].data<float>(), c0 = inputs[3].data<float>(),
                hs = outputs[0].data<float>(), h_T = outputs[1].data<float>(),
                c_T = outputs[2].data<float>(), gates, cells, d, approx = approx_,
                save = save_]() {
    std::vector<float> ga, ce;
    float* g = gates;
    float* c = cells;
    if (!save) {
      ga.resize(int64_t(d.B) * 4 * d.H);
      ce.resize(int64_t(d.B) * d.H);
      g = ga.data();
      c = ce.data();
    }
    lstm_forward_kernel(xw, w, h0, c0, hs, h_T, c_T, g, c, d, approx, save);
  });
}

std::vector<mx::array> LSTMForward::vjp(const std::vector<mx::array>& primals,
                                        const std::vector<mx::array>& cotangents,
                                        const std::vector<int>& argnums,
                                        const std::vector<mx::array>& outputs) {
  const auto& xw = primals[0];
  const auto& w = primals[1];
  const auto& h0 = primals[2];
  const auto& c0 = primals[3];
  std::vector<mx::array> fwd = outputs;
  if (!save_) fwd = lstm_forward(xw, w, h0, c0, approx_, true, stream());
  auto grads = lstm_backward(cotangents[0], cotangents[1], cotangents[2], w, h0, c0, fwd[0],
                             fwd[3], fwd[4], approx_, stream());
  // grads are (dxw, dw_hh, dh0, dc0), in the order of the primals
  std::vector<mx::array> out;
  for (int i : argnums) out.push_back(grads[i]);
  return out;
}

std::vector<mx::Shape> LSTMForward::output_shapes(const std::vector<mx::array>& inputs) {
  const Dims d = lstm_dims(inputs[0]);
  if (!save_) return {{d.B, d.T, d.H}, {d.B, d.H}, {d.B, d.H}, {0}, {0}};
  return {{d.B, d.T, d.H}, {d.B, d.H}, {d.B, d.H}, {d.T, d.B, 4 * d.H}, {d.T, d.B, d.H}};
}

void LSTMBackward::eval_cpu(const std::vector<mx::array>& inputs,
                            std::vector<mx::array>& outputs) {
  allocate(outputs);
  const auto& hs = inputs[6];
  const Dims d = {int(hs.shape(0)), int(hs.shape(1)), int(hs.shape(2))};
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  BackwardIn in{inputs[0].data<float>(), inputs[1].data<float>(), inputs[2].data<float>(),
                inputs[3].data<float>(), inputs[4].data<float>(), inputs[5].data<float>(),
                inputs[6].data<float>(), inputs[7].data<float>(), inputs[8].data<float>()};
  enc.dispatch([in, dxw = outputs[0].data<float>(), dw = outputs[1].data<float>(),
                dh0 = outputs[2].data<float>(), dc0 = outputs[3].data<float>(), d,
                approx = approx_]() { lstm_backward_kernel(in, dxw, dw, dh0, dc0, d, approx); });
}

std::vector<mx::Shape> LSTMBackward::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& hs = inputs[6];
  const int B = hs.shape(0), T = hs.shape(1), H = hs.shape(2);
  return {{B, T, 4 * H}, {4 * H, H}, {B, H}, {B, H}};
}

// ----- ops -----------------------------------------------------------------------------

std::vector<mx::array> lstm_forward(const mx::array& xw, const mx::array& w_hh,
                                    const mx::array& h0, const mx::array& c0, bool approx,
                                    bool save, mx::StreamOrDevice s) {
  const char* op = "lstm_forward";
  auto stream = mx::to_stream(s);
  const auto [B, T, H] = check_sequence(op, "xw", xw, 4);
  (void)T;
  check_shape(op, "w_hh", w_hh, {4 * H, H});
  check_shape(op, "h0", h0, {B, H});
  check_shape(op, "c0", c0, {B, H});
  return make_outputs(op, std::make_shared<LSTMForward>(stream, approx, save), {xw, w_hh, h0, c0},
                      stream);
}

std::vector<mx::array> lstm_backward(const mx::array& dhs, const mx::array& dh_T,
                                     const mx::array& dc_T, const mx::array& w_hh,
                                     const mx::array& h0, const mx::array& c0,
                                     const mx::array& hs, const mx::array& gates,
                                     const mx::array& cells, bool approx, mx::StreamOrDevice s) {
  const char* op = "lstm_backward";
  auto stream = mx::to_stream(s);
  const auto [B, T, H] = check_sequence(op, "hs", hs, 1);
  check_shape(op, "dhs", dhs, {B, T, H});
  check_shape(op, "dh_T", dh_T, {B, H});
  check_shape(op, "dc_T", dc_T, {B, H});
  check_shape(op, "w_hh", w_hh, {4 * H, H});
  check_shape(op, "h0", h0, {B, H});
  check_shape(op, "c0", c0, {B, H});
  check_shape(op, "gates", gates, {T, B, 4 * H});
  check_shape(op, "cells", cells, {T, B, H});
  return make_outputs(op, std::make_shared<LSTMBackward>(stream, approx),
                      {dhs, dh_T, dc_T, w_hh, h0, c0, hs, gates, cells}, stream);
}

}  // namespace mlx_rnn
