// Native dropout masks.
#include "dropout.h"

#include <stdexcept>

namespace mlx_rnn {

namespace {

inline uint32_t lowbias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}

// mask[j] = 1 if uniform(seed, first + j) < keep else 0, for j < n; threshold = keep * 2^24.
MLX_RNN_KERNEL void mask_kernel(uint32_t s0, uint32_t s1, uint32_t threshold, uint32_t first,
                                float* mask, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t i = first + uint32_t(j);
    const uint32_t h = lowbias32(lowbias32(i * 0x9e3779b9u ^ s0) ^ s1);
    mask[j] = (h >> 8) < threshold ? 1.0f : 0.0f;
  }
}

}  // namespace

void DropoutMask::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  allocate(outputs);
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  // keep = 1 keeps everything: threshold 2^24 exceeds every 24-bit draw.
  const auto threshold = uint32_t(keep_ * 16777216.0);
  // The seed is read in the task: its producer runs earlier on the same stream, not before now.
  enc.dispatch([words = inputs[0].data<uint32_t>(), threshold, mask = outputs[0].data<float>(),
                n = int64_t(outputs[0].size())]() {
    const uint32_t s0 = words[0], s1 = words[1];  // int32 and uint32 share the bits
    parallel_for(n, 1 << 16, [=](int64_t lo, int64_t hi) {
      mask_kernel(s0, s1, threshold, uint32_t(lo), mask + lo, hi - lo);
    });
  });
}

void DropoutMask::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error("MlxRnnDropoutMask: no GPU kernel (mlx_rnn uses mlx.nn.Dropout there)");
}

std::vector<mx::array> DropoutMask::vjp(const std::vector<mx::array>& primals,
                                        const std::vector<mx::array>&, const std::vector<int>& argnums,
                                        const std::vector<mx::array>&) {
  // The mask does not depend smoothly on the seed: zero gradient.
  std::vector<mx::array> grads;
  for (int k : argnums) grads.push_back(mx::zeros_like(primals[k], stream()));
  return grads;
}

bool DropoutMask::is_equivalent(const mx::Primitive& other) const {
  return keep_ == static_cast<const DropoutMask&>(other).keep_;
}

mx::array dropout_mask(const mx::array& seed, const mx::Shape& shape, double keep, mx::StreamOrDevice s) {
  const char* op = "dropout_mask";
  auto stream = mx::to_stream(s);
  if (stream.device != mx::Device::cpu) {
    throw std::invalid_argument(std::string(op) + ": the native primitive runs on the CPU only");
  }
  if (seed.size() != 2 || (seed.dtype() != mx::uint32 && seed.dtype() != mx::int32)) {
    throw std::invalid_argument(std::string(op) + ": seed must be 2 uint32 or int32 values, got " +
                                shape_str(seed.shape()));
  }
  if (!(keep > 0.0 && keep <= 1.0)) {
    throw std::invalid_argument(std::string(op) + ": keep probability must be in (0, 1], got " +
                                std::to_string(keep));
  }
  int64_t size = 1;
  for (int d : shape) {
    if (d < 0) throw std::invalid_argument(std::string(op) + ": dimensions must be >= 0, got " + shape_str(shape));
    size *= d;
  }
  if (size > int64_t(UINT32_MAX)) {
    throw std::invalid_argument(std::string(op) + ": at most 2^32 elements expected, got " + shape_str(shape));
  }
  auto flat = mx::contiguous(mx::reshape(seed, {2}, stream), false, stream);
  return mx::array(shape, mx::float32, std::make_shared<DropoutMask>(stream, keep), {flat});
}

}  // namespace mlx_rnn
