// The CPU's peak float32 FMA rate, measured: the ceiling every matrix product here runs under.
#pragma once

#include <cstdint>
#include <utility>

namespace mlx_rnn {

// (GFLOP/s, team size) of `iterations` rounds of 12 independent FMA chains per thread, on a team
// of up to `threads` (q = 0 times it, between two barriers; fewer run when another team holds the
// pool or the system refuses a thread), with the vector width the packed kernels use (AVX-512: 16
// floats, AVX2 + FMA: 8; 2 FLOP per lane). (0, 0) where neither runs (not x86-64, or no AVX2 and
// FMA) and a rate of 0 for a run too short to time. Throws std::invalid_argument for threads or
// iterations < 1.
std::pair<double, int> fma_peak_gflops(int threads, int64_t iterations);

}  // namespace mlx_rnn
