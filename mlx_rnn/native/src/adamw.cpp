// Native fused AdamW update.
#include "adamw.h"

#include <stdexcept>

#include "mlx/allocator.h"


namespace mlx_rnn {

namespace {

struct Scalars {
  float b1, one_minus_b1, b2, one_minus_b2, eps;
};

// Constants rounded to float32 as MLX rounds Python scalars: b1 * m, (1 - b1) * g, ...
Scalars scalars(const AdamWConfig& c) {
  return {float(c.b1), float(1.0 - c.b1), float(c.b2), float(1.0 - c.b2), float(c.eps)};
}

// One pass over n elements; the gradient is g * scale (scale: the clipping factor, 1 without).
// Without bias correction the caller passes c1 = lr, c2 = 1, which gives mlx's
// p - lr m / (sqrt(v) + eps) bit for bit (sqrt(v) * 1 is exact). In place is fine (element j
// reads its inputs before it writes): ivdep lets the compiler vectorise it.
MLX_RNN_KERNEL void adamw_kernel(const float* g, const float* p, const float* m, const float* v,
                                 float scale, float decay, float c1, float c2, Scalars k, float* p_out,
                                 float* m_out, float* v_out, int64_t n) {
#pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) {
    const float gj = g[j] * scale;
    const float mj = k.b1 * m[j] + k.one_minus_b1 * gj;
    const float vj = k.b2 * v[j] + k.one_minus_b2 * (gj * gj);
    const float pj = p[j] * decay;
    m_out[j] = mj;
    v_out[j] = vj;
    p_out[j] = pj - (c1 * mj) / (std::sqrt(vj) * c2 + k.eps);
  }
}

}  // namespace

void AdamWUpdate::eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  // Update in place where MLX allows it (the old parameter, m and v have no other reader).
  for (int i = 0; i < 3; ++i) {
    const auto& in = inputs[i + 1];
    if (in.is_donatable() && in.flags().row_contiguous) {
      outputs[i].copy_shared_buffer(in);
    } else {
      outputs[i].set_data(mx::allocator::malloc(outputs[i].nbytes()));
    }
  }
  auto& enc = begin_cpu_eval(*this, inputs, outputs);
  enc.dispatch([g = inputs[0].data<float>(), p = inputs[1].data<float>(),
                m = inputs[2].data<float>(), v = inputs[3].data<float>(),
                lr = inputs[4].data<float>(), c1 = inputs[5].data<float>(),
                c2 = inputs[6].data<float>(), scale = inputs[7].data<float>(), po = outputs[0].data<float>(),
                mo = outputs[1].data<float>(), vo = outputs[2].data<float>(),
                n = int64_t(inputs[0].size()), cfg = cfg_]() {
    const float decay = 1.0f - *lr * float(cfg.weight_decay);
    const float k1 = cfg.bias_correction ? *c1 : *lr, k2 = cfg.bias_correction ? *c2 : 1.0f;
    const Scalars k = scalars(cfg);
    const float gs = *scale;
    parallel_for(n, 1 << 16, [=](int64_t lo, int64_t hi) {
      adamw_kernel(g + lo, p + lo, m + lo, v + lo, gs, decay, k1, k2, k, po + lo, mo + lo, vo + lo, hi - lo);
    });
  });
}

std::vector<mx::Shape> AdamWUpdate::output_shapes(const std::vector<mx::array>& inputs) {
  return {inputs[1].shape(), inputs[1].shape(), inputs[1].shape()};
}

bool AdamWUpdate::is_equivalent(const mx::Primitive& other) const {
  const auto& o = static_cast<const AdamWUpdate&>(other).cfg_;
  return cfg_.b1 == o.b1 && cfg_.b2 == o.b2 && cfg_.eps == o.eps &&
         cfg_.weight_decay == o.weight_decay && cfg_.bias_correction == o.bias_correction;
}

std::vector<mx::array> adamw_update(const mx::array& gradient, const mx::array& parameter,
                                    const mx::array& m, const mx::array& v, const mx::array& lr,
                                    const mx::array& c1, const mx::array& c2, const mx::array& scale,
                                    AdamWConfig cfg, mx::StreamOrDevice s) {
  const char* op = "adamw_update";
  auto stream = mx::to_stream(s);
  check_shape(op, "gradient", gradient, parameter.shape());
  check_shape(op, "m", m, parameter.shape());
  check_shape(op, "v", v, parameter.shape());
  for (const auto* a : {&lr, &c1, &c2, &scale}) {
    if (a->size() != 1) throw std::invalid_argument(std::string(op) + ": lr, c1, c2, scale must be scalars");
  }
  return make_outputs(op, std::make_shared<AdamWUpdate>(stream, cfg),
                      {gradient, parameter, m, v, lr, c1, c2, scale}, stream);
}

}  // namespace mlx_rnn
