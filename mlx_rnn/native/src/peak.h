// The CPU's peak float32 FMA rate, measured: the ceiling every matrix product here runs under.
#pragma once

#include <cstdint>

namespace mlx_rnn {

// GFLOP/s of `iterations` rounds of kChainsPeak independent FMA chains per thread, on a team of
// `threads` (q = 0 times it, between two barriers), with the vector width the packed kernels
// use (AVX-512: 16 floats, AVX2 + FMA: 8; 2 FLOP per lane). 0 where neither runs (not x86-64,
// or no AVX2 and FMA). Throws std::invalid_argument for threads or iterations < 1.
double fma_peak_gflops(int threads, int64_t iterations);

}  // namespace mlx_rnn
