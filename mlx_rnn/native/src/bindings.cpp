// Python bindings of the native primitives (module mlx_rnn.native._ext).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "mlx/compile.h"

#include "adamw.h"
#include "dropout.h"
#include "gru.h"
#include "lstm.h"
#include "packed.h"
#include "peak.h"
#include "sum_squares.h"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_ext, m) {
  m.doc() = "mlx-rnn native primitives: LSTM and GRU recurrences, fused AdamW, squared norm, dropout masks (CPU)";
  m.attr("built_with_mlx") = MLX_RNN_BUILT_WITH_MLX;
  m.def("lstm_forward", &mlx_rnn::lstm_forward, "xw"_a, "w_hh"_a, "h0"_a, "c0"_a, "approx"_a,
        "save"_a, nb::kw_only(), "bias"_a = nb::none(), "w_ih"_a = nb::none(), "stream"_a = nb::none(),
        "LSTM recurrence (bias (4H,) optional, added to xw; with w_ih (4H,E) the first argument is x "
        "(B,T,E) and xw = x w_ih^T is computed inside): (hs (B,T,H), h_T, c_T (B,H), gates "
        "(T,B,4H), cells (T,B,H)).");
  m.def("lstm_backward", &mlx_rnn::lstm_backward, "dhs"_a, "dh_T"_a, "dc_T"_a, "w_hh"_a, "h0"_a,
        "c0"_a, "hs"_a, "gates"_a, "cells"_a, "approx"_a, nb::kw_only(), "x"_a = nb::none(),
        "stream"_a = nb::none(),
        "LSTM backward: (dxw (B,T,4H), dw_hh (4H,H), dh0, dc0 (B,H)), and dw_ih (4H,E) = dxw^T x "
        "with x (B,T,E).");
  m.def("gru_forward", &mlx_rnn::gru_forward, "xw"_a, "w_hh"_a, "b_hh"_a, "h0"_a, "approx"_a,
        "save"_a, nb::kw_only(), "stream"_a = nb::none(),
        "GRU recurrence: (hs (B,T,H), h_T (B,H), saved (T,B,4H)).");
  m.def("gru_backward", &mlx_rnn::gru_backward, "dhs"_a, "dh_T"_a, "w_hh"_a, "h0"_a, "hs"_a,
        "saved"_a, nb::kw_only(), "stream"_a = nb::none(),
        "GRU backward: (dxw (B,T,3H), dw_hh (3H,H), db_hh (3H,), dh0 (B,H)).");
  m.def(
      "adamw_update",
      [](const mx::array& g, const mx::array& p, const mx::array& m_, const mx::array& v,
         const mx::array& lr, const mx::array& c1, const mx::array& c2, const mx::array& scale,
         double b1, double b2, double eps, double wd, bool bias_correction, mx::StreamOrDevice s) {
        return mlx_rnn::adamw_update(g, p, m_, v, lr, c1, c2, scale, {b1, b2, eps, wd, bias_correction}, s);
      },
      "gradient"_a, "parameter"_a, "m"_a, "v"_a, "lr"_a, "c1"_a, "c2"_a, "scale"_a, "b1"_a, "b2"_a, "eps"_a,
      "weight_decay"_a, "bias_correction"_a, nb::kw_only(), "stream"_a = nb::none(),
      "Fused AdamW update of one parameter with gradient scale: (parameter', m', v').");
  m.def("sum_squares", &mlx_rnn::sum_squares, "arrays"_a, nb::kw_only(), "stream"_a = nb::none(),
        "Sum of the squares of every element of float32 arrays: a float32 scalar.");
  m.def(
      "dropout_mask",
      [](const mx::array& seed, const std::vector<int>& shape, double keep, mx::StreamOrDevice s) {
        return mlx_rnn::dropout_mask(seed, mx::Shape(shape.begin(), shape.end()), keep, s);
      },
      "seed"_a, "shape"_a, "keep"_a, nb::kw_only(), "stream"_a = nb::none(),
      "float32 mask of shape: 1 with probability keep, else 0 (counter-based hash of seed (2,)).");
  m.def("set_num_threads", &mlx_rnn::set_num_threads, "n"_a,
        "Threads for the elementwise kernels (AdamW, sum_squares, dropout_mask).");
  m.def("get_num_threads", &mlx_rnn::num_threads, "Threads for the elementwise kernels.");
  m.def("packed_gemm_available", &mlx_rnn::packed_gemm_available,
        "Whether this CPU runs the packed recurrent kernels (x86-64 with AVX2 and FMA).");
  m.def("set_packed_gemm", &mlx_rnn::set_packed_gemm, "on"_a,
        "Use the packed recurrent kernels on a thread team where available (default on).");
  m.def(
      "set_compile_fusion",
      [](bool on) { mx::set_compile_mode(on ? mx::CompileMode::enabled : mx::CompileMode::no_fuse); },
      "on"_a,
      "mx.compile with fused elementwise kernels (on: MLX's default; on the CPU each kernel is C++ "
      "built by the system compiler at first use) or without them (graph simplification only).");
  m.def("fma_peak_gflops", &mlx_rnn::fma_peak_gflops, "threads"_a, "iterations"_a,
        "(GFLOP/s, team size) of `iterations` rounds of 12 independent float32 vector FMA chains on "
        "each thread of a team of up to `threads` (the packed kernels' width); (0.0, 0) where those "
        "kernels cannot run.");
  m.def("packed_gemm_enabled", &mlx_rnn::packed_gemm_enabled, "Whether the packed kernels run.");
}
