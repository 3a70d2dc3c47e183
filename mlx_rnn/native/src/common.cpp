// BLAS binding and argument checks shared by the native recurrences.
#include "common.h"

#include <algorithm>
#include <atomic>
#include <sstream>
#include <system_error>
#include <thread>
#include <stdexcept>
#include <typeinfo>

#include "mlx/allocator.h"

#ifdef __APPLE__
#include <Accelerate/Accelerate.h>
#else
extern "C" {
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemv(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, int m, int n, float alpha, const float* a,
                 int lda, const float* x, int incx, float beta, float* y, int incy);
void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc);
}
#endif

namespace mlx_rnn {

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 1 && !trans_a) {  // one row (batch 1, as when scoring a text): a matrix-vector product
    // c (1 x n) = a (1 x k) op(b): as a column, c^T = op(b)^T a^T
    cblas_sgemv(CblasRowMajor, trans_b ? CblasNoTrans : CblasTrans, trans_b ? n : k, trans_b ? k : n,
                alpha, b, ldb, a, 1, beta, c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace {
std::atomic<int> g_num_threads{1};
}  // namespace

int num_threads() { return g_num_threads.load(std::memory_order_relaxed); }

void set_num_threads(int n) { g_num_threads.store(std::max(1, std::min(n, 256))); }

void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t by_size = min_chunk > 0 ? n / min_chunk : n;
  const int chunks = int(std::max<int64_t>(1, std::min<int64_t>(num_threads(), by_size)));
  if (chunks == 1) {
    if (n > 0) fn(0, n);
    return;
  }
  const int64_t step = ((n + chunks - 1) / chunks + 63) / 64 * 64;
  std::vector<std::thread> workers;
  workers.reserve(chunks - 1);
  for (int c = 1; c < chunks; ++c) {
    const int64_t lo = std::min(n, c * step), hi = std::min(n, lo + step);
    if (lo >= hi) break;
    try {
      workers.emplace_back(fn, lo, hi);
    } catch (const std::system_error&) {  // no thread to be had: do this chunk here
      fn(lo, hi);
    }
  }
  fn(0, std::min(n, step));
  for (auto& w : workers) w.join();
}

std::string shape_str(const mx::Shape& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

void check_float32_cpu(const char* op, const std::vector<mx::array>& arrays, mx::Stream s) {
  if (s.device != mx::Device::cpu) {
    throw std::invalid_argument(std::string(op) + ": the native primitive runs on the CPU only "
                                "(use mlx_rnn's op path on the GPU)");
  }
  for (const auto& a : arrays) {
    if (a.dtype() != mx::float32) {
      throw std::invalid_argument(std::string(op) + ": expected float32 inputs");
    }
  }
}

void check_shape(const char* op, const char* what, const mx::array& a, const mx::Shape& want) {
  if (a.shape() != want) {
    throw std::invalid_argument(std::string(op) + ": " + what + " has shape " +
                                shape_str(a.shape()) + ", expected " + shape_str(want));
  }
}

std::vector<mx::array> contiguous_all(const std::vector<mx::array>& arrays, mx::Stream s) {
  std::vector<mx::array> out;
  out.reserve(arrays.size());
  for (const auto& a : arrays) out.push_back(mx::contiguous(a, false, s));
  return out;
}

void CpuPrimitive::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  throw std::runtime_error(std::string(name()) + ": no GPU kernel (mlx_rnn uses its op path there)");
}

bool CpuPrimitive::is_equivalent(const mx::Primitive& other) const {
  if (typeid(*this) != typeid(other)) return false;
  const auto& o = static_cast<const CpuPrimitive&>(other);
  return approx_ == o.approx_ && save_ == o.save_;
}

mx::cpu::CommandEncoder& begin_cpu_eval(mx::Primitive& p, const std::vector<mx::array>& inputs,
                                        std::vector<mx::array>& outputs) {
  for (const auto& a : inputs) {
    if (!a.flags().row_contiguous) {
      throw std::runtime_error(std::string(p.name()) + ": internal error, non-contiguous input");
    }
  }
  auto& enc = mx::cpu::get_command_encoder(p.stream());
  for (const auto& a : inputs) enc.set_input_array(a);
  for (auto& o : outputs) enc.set_output_array(o);
  return enc;
}

std::vector<mx::array> make_outputs(const char* op, std::shared_ptr<mx::Primitive> prim,
                                    const std::vector<mx::array>& inputs, mx::Stream s) {
  check_float32_cpu(op, inputs, s);
  auto in = contiguous_all(inputs, s);
  auto shapes = prim->output_shapes(in);
  const size_t n = shapes.size();
  return mx::array::make_arrays(std::move(shapes), std::vector<mx::Dtype>(n, mx::float32), prim, in);
}

std::array<int, 3> check_sequence(const char* op, const char* what, const mx::array& a, int gates) {
  if (a.ndim() != 3 || a.shape(2) % gates != 0 || a.size() == 0) {
    const std::string g = gates == 1 ? "H" : std::to_string(gates) + "H";
    throw std::invalid_argument(std::string(op) + ": " + what + " must be (B, T, " + g +
                                ") with B, T, H >= 1, got " + shape_str(a.shape()));
  }
  return {int(a.shape(0)), int(a.shape(1)), int(a.shape(2) / gates)};
}

void allocate(std::vector<mx::array>& outputs) {
  for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
}

}  // namespace mlx_rnn
