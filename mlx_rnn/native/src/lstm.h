// The LSTM recurrence over a whole sequence as two MLX primitives (forward, backward).
//
// Gate order i, f, g, o (torch.nn.LSTM). Per step, with xw = x W_ih^T + b_ih + b_hh given:
//   z_t = xw[:, t] + h_{t-1} W_hh^T;  i, f, o = sigmoid(z_i, z_f, z_o);  g = tanh(z_g)
//   c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
// The backward pass is the one of mlx_rnn/lstm_op.py (the cuDNN recipe): one sgemm per step
// for dh, dW_hh = dZ^T H_prev as one sgemm after the loop.
#pragma once

#include <optional>

#include "common.h"

namespace mlx_rnn {

// Outputs: hs (B, T, H), h_T (B, H), c_T (B, H), gates (T, B, 4H) activated [i f g o],
// cells (T, B, H). With save = false, gates and cells are empty (0,) and the VJP re-runs the
// forward to get them. approx: Eigen's rational tanh/sigmoid (training); else Cephes' accurate tanh/exp (common.h).
// bias (4H,), optional: added to xw at every step (so the caller's input projection needs no
// broadcast add); its gradient is dxw summed over B and T.
// w_ih (4H, E), optional: then the first argument is the layer's input x (B, T, E), and the
// input projection xw = x W_ih^T is computed inside, step by step (packed path) or by one sgemm
// first; gradients dx = dxw W_ih (one matmul) and dW_ih = dxw^T x (by lstm_backward, in the sgemm
// that forms dW_hh).
std::vector<mx::array> lstm_forward(const mx::array& xw, const mx::array& w_hh,
                                    const mx::array& h0, const mx::array& c0, bool approx,
                                    bool save, const std::optional<mx::array>& bias = std::nullopt,
                                    const std::optional<mx::array>& w_ih = std::nullopt,
                                    mx::StreamOrDevice s = {});

// Outputs: dxw (B, T, 4H), dw_hh (4H, H), dh0 (B, H), dc0 (B, H); with x (B, T, E), the layer's
// input, also dw_ih (4H, E) = dxw^T x, computed in the same sgemm as dw_hh.
std::vector<mx::array> lstm_backward(const mx::array& dhs, const mx::array& dh_T,
                                     const mx::array& dc_T, const mx::array& w_hh,
                                     const mx::array& h0, const mx::array& c0,
                                     const mx::array& hs, const mx::array& gates,
                                     const mx::array& cells, bool approx,
                                     const std::optional<mx::array>& x = std::nullopt,
                                     mx::StreamOrDevice s = {});

class LSTMForward : public CpuPrimitive {
 public:
  LSTMForward(mx::Stream stream, bool approx, bool save, bool has_bias, bool fused)
      : CpuPrimitive(stream, approx, save), has_bias_(has_bias), fused_(fused) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override { return "MlxRnnLSTMForward"; }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  bool has_bias_;
  bool fused_;  // inputs: x (not xw), w_hh, h0, c0, [bias], w_ih
};

class LSTMBackward : public CpuPrimitive {
 public:
  LSTMBackward(mx::Stream stream, bool approx, bool has_x)
      : CpuPrimitive(stream, approx, true), has_x_(has_x) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override { return "MlxRnnLSTMBackward"; }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  bool has_x_;  // input 9 is x, output 4 dw_ih
};

}  // namespace mlx_rnn
