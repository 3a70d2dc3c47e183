// The squared global norm of a list of arrays as one MLX primitive, for gradient clipping.
//
//   sum_squares([g_1, ..., g_n]) = sum_k sum_j g_k[j]^2      (a float32 scalar)
//
// One vectorised pass per array, split over the native threads; each block of 4096 elements is
// summed in float32 (16 lanes) and the block sums in float64, so the result is at least as
// accurate as mlx's per-array float32 sums (mlx.optimizers.clip_grad_norm).
#pragma once

#include "common.h"

namespace mlx_rnn {

// Inputs: one or more float32 arrays of any shape (empty ones count 0). Output: a float32 scalar.
mx::array sum_squares(const std::vector<mx::array>& arrays, mx::StreamOrDevice s = {});

class SumOfSquares : public CpuPrimitive {
 public:
  explicit SumOfSquares(mx::Stream stream) : CpuPrimitive(stream, false, false) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  const char* name() const override { return "MlxRnnSumOfSquares"; }
};

}  // namespace mlx_rnn
