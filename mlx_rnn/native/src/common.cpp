// BLAS binding and argument checks shared by the native recurrences.
#include "common.h"

#include <sstream>
#include <stdexcept>

#include "mlx/allocator.h"

#ifdef __APPLE__
#include <Accelerate/Accelerate.h>
#else
extern "C" {
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                 float alpha, const float* a, int lda, const float* b, int ldb, float beta,
                 float* c, int ldc);
}
#endif

namespace mlx_rnn {

void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
           int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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

void allocate(std::vector<mx::array>& outputs) {
  for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
}

}  // namespace mlx_rnn
