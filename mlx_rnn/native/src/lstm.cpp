// Native LSTM recurrence: the two primitives and their ops (kernels: lstm_kernels.h).
#include "lstm.h"

#include "lstm_kernels.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>


namespace mlx_rnn {

namespace {

// B, T from xw (or x), H from w_hh (4H, H).
Dims lstm_dims(const mx::array& xw, const mx::array& w_hh) {
  return {int(xw.shape(0)), int(xw.shape(1)), int(w_hh.shape(1))};
}

// dx = dxw W_ih, one matmul over all B T rows (the gradient of x with the projection inside).
mx::array input_grad(const mx::array& dxw, const mx::array& w_ih, mx::Stream s) {
  const int B = dxw.shape(0), T = dxw.shape(1), G = dxw.shape(2), E = w_ih.shape(1);
  return mx::reshape(mx::matmul(mx::reshape(dxw, {B * T, G}, s), w_ih, s), {B, T, E}, s);
}

}  // namespace

// ----- primitives --------------------------------------------------------------------

void LSTMForward::eval_cpu(const std::vector<mx::array>& inputs,
                           std::vector<mx::array>& outputs) {
  allocate(outputs);
  const Dims d = lstm_dims(inputs[0], inputs[1]);
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  ForwardArgs args{inputs[0].data<float>(), inputs[1].data<float>(), inputs[2].data<float>(),
                   inputs[3].data<float>(), outputs[0].data<float>(), outputs[1].data<float>(),
                   outputs[2].data<float>(), outputs[3].data<float>(), outputs[4].data<float>(),
                   has_bias_ ? inputs[4].data<float>() : nullptr, d, approx_, save_};
  if (fused_) {
    args.w_ih = inputs.back().data<float>();
    args.E = int(inputs[0].shape(2));
  }
  enc.dispatch([args]() {
    const int team = packed_team_size(args.d, 4);
    if (team > 0) {
      lstm_forward_packed(args, team);
    } else {
      lstm_forward_blas(args);
    }
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
  std::optional<mx::array> bias, w_ih;
  if (has_bias_) bias = primals[4];
  if (fused_) w_ih = primals.back();
  std::vector<mx::array> fwd = outputs;
  if (!save_) fwd = lstm_forward(xw, w, h0, c0, approx_, true, bias, w_ih, stream());
  // with w_ih, primal 0 is x and the last primal w_ih: dW_ih = dxw^T x comes from the backward
  // primitive (in the sgemm of dW_hh), dx = dxw W_ih from one matmul
  const int w_ih_at = fused_ ? int(primals.size()) - 1 : -1;
  std::optional<mx::array> x;
  if (std::find(argnums.begin(), argnums.end(), w_ih_at) != argnums.end()) x = xw;
  auto grads = lstm_backward(cotangents[0], cotangents[1], cotangents[2], w, h0, c0, fwd[0],
                             fwd[3], fwd[4], approx_, x, stream());
  // grads are (dxw, dw_hh, dh0, dc0), in the order of the primals, [dw_ih]; the bias's is dxw summed
  std::vector<mx::array> out;
  for (int i : argnums) {
    if (i == w_ih_at) {
      out.push_back(grads[4]);
    } else if (i == 0 && fused_) {
      out.push_back(input_grad(grads[0], *w_ih, stream()));
    } else {
      out.push_back(i < 4 ? grads[i] : mx::sum(grads[0], std::vector<int>{0, 1}, false, stream()));
    }
  }
  return out;
}

bool LSTMForward::is_equivalent(const mx::Primitive& other) const {
  if (!CpuPrimitive::is_equivalent(other)) return false;  // (the same type: the cast below is safe)
  const auto& o = static_cast<const LSTMForward&>(other);
  return o.has_bias_ == has_bias_ && o.fused_ == fused_;
}

std::vector<mx::Shape> LSTMForward::output_shapes(const std::vector<mx::array>& inputs) {
  const Dims d = lstm_dims(inputs[0], inputs[1]);
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
  BackwardOut out{outputs[0].data<float>(), outputs[1].data<float>(), outputs[2].data<float>(),
                  outputs[3].data<float>()};
  if (has_x_) {
    in.x = inputs[9].data<float>();
    in.E = int(inputs[9].shape(2));
    out.dw_ih = outputs[4].data<float>();
  }
  enc.dispatch([in, out, d, approx = approx_]() {
    const int team = packed_team_size(d, 4);
    if (team > 0) {
      lstm_backward_packed(in, out, d, approx, team);
    } else {
      lstm_backward_blas(in, out, d, approx);
    }
    lstm_weight_grad(in, out, d);
  });
}

std::vector<mx::Shape> LSTMBackward::output_shapes(const std::vector<mx::array>& inputs) {
  const auto& hs = inputs[6];
  const int B = hs.shape(0), T = hs.shape(1), H = hs.shape(2);
  if (has_x_) return {{B, T, 4 * H}, {4 * H, H}, {B, H}, {B, H}, {4 * H, inputs[9].shape(2)}};
  return {{B, T, 4 * H}, {4 * H, H}, {B, H}, {B, H}};
}

bool LSTMBackward::is_equivalent(const mx::Primitive& other) const {
  if (!CpuPrimitive::is_equivalent(other)) return false;
  return static_cast<const LSTMBackward&>(other).has_x_ == has_x_;
}

// ----- ops -----------------------------------------------------------------------------

std::vector<mx::array> lstm_forward(const mx::array& xw, const mx::array& w_hh,
                                    const mx::array& h0, const mx::array& c0, bool approx,
                                    bool save, const std::optional<mx::array>& bias,
                                    const std::optional<mx::array>& w_ih, mx::StreamOrDevice s) {
  const char* op = "lstm_forward";
  auto stream = mx::to_stream(s);
  int B, H;
  if (w_ih) {  // xw is x (B, T, E); H from w_hh
    if (xw.ndim() != 3 || xw.size() == 0) {
      throw std::invalid_argument(std::string(op) + ": x must be (B, T, E) with B, T, E >= 1, got " +
                                  shape_str(xw.shape()));
    }
    const int b = int(xw.shape(0)), e = int(xw.shape(2));
    if (w_hh.ndim() != 2 || w_hh.shape(1) == 0 || w_hh.shape(0) != 4 * w_hh.shape(1)) {
      throw std::invalid_argument(std::string(op) + ": w_hh must be (4H, H) with H >= 1, got " +
                                  shape_str(w_hh.shape()));
    }
    B = b, H = int(w_hh.shape(1));
    check_shape(op, "w_ih", *w_ih, {4 * H, e});
  } else {
    const auto [b, t, h] = check_sequence(op, "xw", xw, 4);
    (void)t;
    B = b, H = h;
    check_shape(op, "w_hh", w_hh, {4 * H, H});
  }
  check_shape(op, "h0", h0, {B, H});
  check_shape(op, "c0", c0, {B, H});
  std::vector<mx::array> inputs = {xw, w_hh, h0, c0};
  if (bias) {
    check_shape(op, "bias", *bias, {4 * H});
    inputs.push_back(*bias);
  }
  if (w_ih) inputs.push_back(*w_ih);
  auto prim = std::make_shared<LSTMForward>(stream, approx, save, bias.has_value(), w_ih.has_value());
  return make_outputs(op, prim, inputs, stream);
}

std::vector<mx::array> lstm_backward(const mx::array& dhs, const mx::array& dh_T,
                                     const mx::array& dc_T, const mx::array& w_hh,
                                     const mx::array& h0, const mx::array& c0,
                                     const mx::array& hs, const mx::array& gates,
                                     const mx::array& cells, bool approx,
                                     const std::optional<mx::array>& x, mx::StreamOrDevice s) {
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
  std::vector<mx::array> inputs = {dhs, dh_T, dc_T, w_hh, h0, c0, hs, gates, cells};
  if (x) {
    if (x->ndim() != 3 || x->shape(0) != B || x->shape(1) != T || x->shape(2) == 0) {
      throw std::invalid_argument(std::string(op) + ": x must be (B, T, E) = (" + std::to_string(B) + ", " +
                                  std::to_string(T) + ", E >= 1), got " + shape_str(x->shape()));
    }
    inputs.push_back(*x);
  }
  return make_outputs(op, std::make_shared<LSTMBackward>(stream, approx, x.has_value()), inputs, stream);
}

}  // namespace mlx_rnn
