// The GRU recurrence over a whole sequence as two MLX primitives (forward, backward).
//
// Gate order r, z, n (torch.nn.GRU). Per step, with xw = x W_ih^T + b_ih given:
//   hw = h_{t-1} W_hh^T + b_hh;  r = sigmoid(xw_r + hw_r);  z = sigmoid(xw_z + hw_z)
//   n = tanh(xw_n + r * hw_n)  (b_hn inside the reset product, at every step);
//   h_t = (1 - z) n + z h_{t-1}
// Backward: dh_{t-1} = dh z + dhw W_hh with dhw = [da_r, da_z, da_n r]; dW_hh = dHW^T H_prev and
// db_hh = column sums of dHW after the loop (one sgemm).
#pragma once

#include "common.h"

namespace mlx_rnn {

// Outputs: hs (B, T, H), h_T (B, H), saved (T, B, 4H) = [r, z, n, hw_n] (empty (0,) when
// save = false; the VJP then re-runs the forward).
std::vector<mx::array> gru_forward(const mx::array& xw, const mx::array& w_hh,
                                   const mx::array& b_hh, const mx::array& h0, bool approx,
                                   bool save, mx::StreamOrDevice s = {});

// Outputs: dxw (B, T, 3H), dw_hh (3H, H), db_hh (3H,), dh0 (B, H).
std::vector<mx::array> gru_backward(const mx::array& dhs, const mx::array& dh_T,
                                    const mx::array& w_hh, const mx::array& h0,
                                    const mx::array& hs, const mx::array& saved,
                                    mx::StreamOrDevice s = {});

class GRUForward : public CpuPrimitive {
 public:
  GRUForward(mx::Stream stream, bool approx, bool save) : CpuPrimitive(stream, approx, save) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override { return "MlxRnnGRUForward"; }
};

class GRUBackward : public CpuPrimitive {
 public:
  explicit GRUBackward(mx::Stream stream) : CpuPrimitive(stream, false, true) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override { return "MlxRnnGRUBackward"; }
};

}  // namespace mlx_rnn
