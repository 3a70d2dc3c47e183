// Dropout masks as one MLX primitive: a counter-based hash of (seed, element index).
//
//   u_j = (hash(seed, j) >> 8) * 2^-24  (uniform on [0, 1) in 24 bits);  mask_j = u_j < keep
//
// hash: two rounds of the "lowbias32" integer mixer (Chris Wellons, "Prospecting for hash
// functions", 2018), keyed by the two seed words. The seed comes from MLX's random state
// (mlx_rnn/dropout.py), so masks follow mx.random.seed and checkpointed RNG state exactly.
#pragma once

#include "common.h"

namespace mlx_rnn {

// seed: uint32 (2,) (or int32); keep: the keep probability in (0, 1]. Output: float32 array of
// `shape` holding 1 where kept and 0 where dropped.
mx::array dropout_mask(const mx::array& seed, const mx::Shape& shape, double keep,
                       mx::StreamOrDevice s = {});

class DropoutMask : public mx::Primitive {
 public:
  DropoutMask(mx::Stream stream, double keep) : mx::Primitive(stream), keep_(keep) {}
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;
  const char* name() const override { return "MlxRnnDropoutMask"; }
  bool is_equivalent(const mx::Primitive& other) const override;

 private:
  double keep_;
};

}  // namespace mlx_rnn
