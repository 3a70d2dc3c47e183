// Python bindings of the native primitives (module mlx_rnn.native._ext).
#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "adamw.h"
#include "gru.h"
#include "lstm.h"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_ext, m) {
  m.doc() = "mlx-rnn native primitives: LSTM and GRU recurrences, fused AdamW (CPU, float32)";
  m.attr("built_with_mlx") = MLX_RNN_BUILT_WITH_MLX;
  m.def("lstm_forward", &mlx_rnn::lstm_forward, "xw"_a, "w_hh"_a, "h0"_a, "c0"_a, "approx"_a,
        "save"_a, nb::kw_only(), "stream"_a = nb::none(),
        "LSTM recurrence: (hs (B,T,H), h_T, c_T (B,H), gates (T,B,4H), cells (T,B,H)).");
  m.def("lstm_backward", &mlx_rnn::lstm_backward, "dhs"_a, "dh_T"_a, "dc_T"_a, "w_hh"_a, "h0"_a,
        "c0"_a, "hs"_a, "gates"_a, "cells"_a, "approx"_a, nb::kw_only(), "stream"_a = nb::none(),
        "LSTM backward: (dxw (B,T,4H), dw_hh (4H,H), dh0, dc0 (B,H)).");
  m.def("gru_forward", &mlx_rnn::gru_forward, "xw"_a, "w_hh"_a, "b_hh"_a, "h0"_a, "approx"_a,
        "save"_a, nb::kw_only(), "stream"_a = nb::none(),
        "GRU recurrence: (hs (B,T,H), h_T (B,H), saved (T,B,4H)).");
  m.def("gru_backward", &mlx_rnn::gru_backward, "dhs"_a, "dh_T"_a, "w_hh"_a, "h0"_a, "hs"_a,
        "saved"_a, nb::kw_only(), "stream"_a = nb::none(),
        "GRU backward: (dxw (B,T,3H), dw_hh (3H,H), db_hh (3H,), dh0 (B,H)).");
  m.def(
      "adamw_update",
      [](const mx::array& g, const mx::array& p, const mx::array& m_, const mx::array& v,
         const mx::array& lr, const mx::array& c1, const mx::array& c2, double b1, double b2,
         double eps, double wd, bool bias_correction, mx::StreamOrDevice s) {
        return mlx_rnn::adamw_update(g, p, m_, v, lr, c1, c2, {b1, b2, eps, wd, bias_correction}, s);
      },
      "gradient"_a, "parameter"_a, "m"_a, "v"_a, "lr"_a, "c1"_a, "c2"_a, "b1"_a, "b2"_a, "eps"_a,
      "weight_decay"_a, "bias_correction"_a, nb::kw_only(), "stream"_a = nb::none(),
      "Fused AdamW update of one parameter: (parameter', m', v').");
}
