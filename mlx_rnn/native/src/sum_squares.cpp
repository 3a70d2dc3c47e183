// Native squared norm (sum of squares over a list of arrays), for gradient clipping.
#include "sum_squares.h"

#include <algorithm>
#include <stdexcept>

namespace mlx_rnn {

namespace {

constexpr int kLanes = 16;
constexpr int64_t kBlock = 4096;

// sum_j x[j]^2 over one block of n <= kBlock elements, in float32 lanes.
MLX_RNN_KERNEL float block_squares(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += x[j + l] * x[j + l];
  }
  for (; j < n; ++j) acc[0] += x[j] * x[j];
  float block = 0.0f;
  for (int l = 0; l < kLanes; ++l) block += acc[l];
  return block;
}

// sum of squares of n elements: block sums computed in parallel, added in order in float64
// (the same bits for any number of threads).
double squares(const float* x, int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> sums(blocks);
  parallel_for(blocks, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) sums[b] = block_squares(x + b * kBlock, std::min(kBlock, n - b * kBlock));
  });
  double total = 0.0;
  for (double s : sums) total += s;
  return total;
}

}  // namespace

void SumOfSquares::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  allocate(outputs);
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  std::vector<std::pair<const float*, int64_t>> parts;
  for (const auto& a : inputs) parts.emplace_back(a.data<float>(), int64_t(a.size()));
  enc.dispatch([parts = std::move(parts), out = outputs[0].data<float>()]() {
    double total = 0.0;
    for (const auto& [x, n] : parts) total += squares(x, n);
    *out = float(total);
  });
}

std::vector<mx::array> SumOfSquares::vjp(const std::vector<mx::array>& primals,
                                         const std::vector<mx::array>& cotangents,
                                         const std::vector<int>& argnums,
                                         const std::vector<mx::array>&) {
  // d/dx_k sum x^2 = 2 x_k
  std::vector<mx::array> grads;
  const auto two_cot = mx::multiply(mx::array(2.0f), cotangents[0], stream());
  for (int k : argnums) grads.push_back(mx::multiply(two_cot, primals[k], stream()));
  return grads;
}

std::vector<mx::Shape> SumOfSquares::output_shapes(const std::vector<mx::array>&) {
  return {mx::Shape{}};
}

mx::array sum_squares(const std::vector<mx::array>& arrays, mx::StreamOrDevice s) {
  const char* op = "sum_squares";
  if (arrays.empty()) throw std::invalid_argument(std::string(op) + ": expected at least one array");
  auto stream = mx::to_stream(s);
  return make_outputs(op, std::make_shared<SumOfSquares>(stream), arrays, stream)[0];
}

}  // namespace mlx_rnn
