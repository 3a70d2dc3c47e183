// AdamW's update of one parameter as one MLX primitive (mlx.optimizers.AdamW semantics).
//
//   g <- g * scale (the gradient-clipping factor of mlx.optimizers.clip_grad_norm; 1 without)
//   p' = p (1 - lr wd);  m' = b1 m + (1 - b1) g;  v' = b2 v + (1 - b2) g^2
//   with bias correction: p'' = p' - c1 m' / (sqrt(v') c2 + eps), c1 = lr / (1 - b1^t),
//   c2 = 1 / sqrt(1 - b2^t);  without: p'' = p' - lr m' / (sqrt(v') + eps)
// (Loshchilov & Hutter 2019; the formulas of mlx/optimizers/optimizers.py, Adam and AdamW.)
#pragma once

#include "common.h"

namespace mlx_rnn {

struct AdamWConfig {
  double b1, b2, eps, weight_decay;
  bool bias_correction;
};

// Inputs: gradient, parameter, m, v (same shape, float32) and the float32 scalars lr, c1, c2, scale.
// Outputs: the new parameter, m and v.
std::vector<mx::array> adamw_update(const mx::array& gradient, const mx::array& parameter,
                                    const mx::array& m, const mx::array& v, const mx::array& lr,
                                    const mx::array& c1, const mx::array& c2, const mx::array& scale,
                                    AdamWConfig cfg, mx::StreamOrDevice s = {});

class AdamWUpdate : public CpuPrimitive {
 public:
  AdamWUpdate(mx::Stream stream, AdamWConfig cfg) : CpuPrimitive(stream, false, false), cfg_(cfg) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override { return "MlxRnnAdamWUpdate"; }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  AdamWConfig cfg_;
};

}  // namespace mlx_rnn
