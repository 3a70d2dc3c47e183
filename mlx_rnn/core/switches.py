"""The environment switches (``MLX_RNN_*``): read and validated here, and nowhere else.

:func:`read` returns a :class:`Switches` record from the environment as it is now (read at
every call, so a test or a script that changes ``os.environ`` sees the change at the next one;
only the parsing of values unchanged since the last call is reused), and
refuses a value a switch does not take with a one-line ValueError naming the variable, the
value and the values allowed, which every script turns into exit 2. Every module asks this
record instead of ``os.environ``; :func:`describe` is the text the run header and the
benchmark print (the switches set to something other than their default).

Imports only the standard library (no numpy, mlx or torch): :mod:`mlx_rnn._blas.preload`
reads ``MLX_RNN_BLAS`` through :func:`read_one` before ``mlx.core`` is imported.

The switches (docs/usage.md; what they do: docs/native.md):

===================== ============== ===============================================================
variable              field          values (default first)
===================== ============== ===============================================================
MLX_RNN_LSTM_IMPL     lstm_impl      auto | native | op | reference: the recurrence
MLX_RNN_LSTM_ACT      lstm_act       auto | exact | approx: the recurrences' tanh/sigmoid
MLX_RNN_LAYERS        layers         auto | mlx: native dropout masks, one-hot embedding products
MLX_RNN_ADAMW         adamw          auto | mlx: the fused native AdamW update and clipping norm
MLX_RNN_NUM_THREADS   num_threads    unset | a positive integer: the native kernels' threads
MLX_RNN_PACKED        packed         1 | 0: the packed recurrent kernels on a thread team
MLX_RNN_CPU_FUSION    cpu_fusion     auto | 1 | 0: fused kernels of ``mx.compile`` on the CPU
MLX_RNN_BLAS          blas           unset | a library path or soname | reference (off, none, 0 ..)
MLX_RNN_FAULT         fault          unset | RANK:STEP:MODE: a fault injected into a distributed
                                     run (tests; :func:`mlx_rnn.core.distributed.parse_fault`)
===================== ============== ===============================================================

``MLX_RNN_BLAS`` is checked where it is used (a library that cannot be opened is refused by
the preload); ``native`` where the extension is missing is refused by
:func:`mlx_rnn.recurrence.requested`. A value is stripped of white space, the word-valued ones
are lower-cased, and an empty value counts as unset.

Not switches, so read where they are used: ``MLX_RNN_DATA`` (the default of ``--data-dir``:
:func:`mlx_rnn.core.data.resolve_data_dir`); ``OPENBLAS_NUM_THREADS`` and ``OMP_NUM_THREADS``
(the BLAS's own thread counts, which the native kernels follow when ``MLX_RNN_NUM_THREADS`` is
unset: :mod:`mlx_rnn.native`, :mod:`mlx_rnn.parallel`); ``OPENBLAS_THREAD_TIMEOUT`` (written by
the preload for OpenBLAS); ``MLX_ENABLE_TF32`` and mlx-rnn's mark ``MLX_RNN_TF32_SET``
(:mod:`mlx_rnn.core.precision`); and the launchers' variables (``MLX_HOSTFILE``, ``RANK``,
``WORLD_SIZE`` ...: the two ``parallel`` modules).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import os
from typing import Mapping

LSTM_IMPL = "MLX_RNN_LSTM_IMPL"
LSTM_ACT = "MLX_RNN_LSTM_ACT"
LAYERS = "MLX_RNN_LAYERS"
ADAMW = "MLX_RNN_ADAMW"
NUM_THREADS = "MLX_RNN_NUM_THREADS"
PACKED = "MLX_RNN_PACKED"
CPU_FUSION = "MLX_RNN_CPU_FUSION"
BLAS = "MLX_RNN_BLAS"
FAULT = "MLX_RNN_FAULT"

IMPL_CHOICES = ("auto", "native", "op", "reference")
ACT_CHOICES = ("auto", "exact", "approx")
FUSION_CHOICES = ("auto", "0", "1")

__all__ = ["Switches", "read", "read_one", "describe", "LSTM_IMPL", "LSTM_ACT", "LAYERS", "ADAMW",
           "NUM_THREADS", "PACKED", "CPU_FUSION", "BLAS", "FAULT"]


@dataclass(frozen=True)
class Switches:
    """The ``MLX_RNN_*`` switches, validated (the table in the module docstring); the defaults
    are what an unset variable means."""

    lstm_impl: str = "auto"
    lstm_act: str = "auto"
    layers: str = "auto"
    adamw: str = "auto"
    num_threads: int | None = None
    packed: bool = True
    cpu_fusion: str = "auto"
    blas: str | None = None
    fault: str | None = None

    def non_default(self) -> dict[str, str]:
        """The switches not at their default, as ``{variable: value}`` in the environment's
        spelling (``MLX_RNN_PACKED: "0"``), in the order of the fields."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[_VARIABLES[f.name]] = _spelling(value)
        return out


_VARIABLES = {"lstm_impl": LSTM_IMPL, "lstm_act": LSTM_ACT, "layers": LAYERS, "adamw": ADAMW,
              "num_threads": NUM_THREADS, "packed": PACKED, "cpu_fusion": CPU_FUSION, "blas": BLAS,
              "fault": FAULT}


def _spelling(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _word(raw: str, name: str, choices: tuple, expected: str) -> str:
    value = raw.lower() or choices[0]
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected {expected}")
    return value


def _num_threads(raw: str) -> int | None:
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{NUM_THREADS}={raw!r}: expected a positive integer")
    return value


def _packed(raw: str) -> bool:
    raw = raw or "1"
    if raw not in ("0", "1"):
        raise ValueError(f"{PACKED}={raw!r}: expected 1 (the packed recurrent kernels, default) or 0")
    return raw == "1"


_PARSERS = {
    "lstm_impl": lambda raw: _word(raw, LSTM_IMPL, IMPL_CHOICES, f"one of {', '.join(IMPL_CHOICES)}"),
    "lstm_act": lambda raw: _word(raw, LSTM_ACT, ACT_CHOICES, "auto, exact or approx"),
    "layers": lambda raw: _word(raw, LAYERS, ("auto", "mlx"), "auto or mlx"),
    "adamw": lambda raw: _word(raw, ADAMW, ("auto", "mlx"), "auto or mlx"),
    "num_threads": _num_threads,
    "packed": _packed,
    "cpu_fusion": lambda raw: _word(raw, CPU_FUSION, FUSION_CHOICES,
                                    "auto (default: no fused kernels where the native recurrence serves a "
                                    "CPU run), 1 (fused kernels, compiled at first use) or 0 (none)"),
    "blas": lambda raw: raw or None,
    "fault": lambda raw: raw or None,
}


def read_one(name: str, environ: Mapping[str, str] | None = None):
    """The one switch of field ``name`` (e.g. ``"blas"``), validated alone: for the BLAS preload,
    which runs as ``mlx_rnn.device`` is imported, where a bad value of another switch must not
    fail yet (it fails at :func:`read`, inside a script's error handling).

    Raises:
        KeyError: ``name`` is not a field of :class:`Switches`.
        ValueError: a value the switch does not take (one line naming the variable).
    """
    env = os.environ if environ is None else environ
    return _PARSERS[name]((env.get(_VARIABLES[name]) or "").strip())


def _raw_values(environ: Mapping[str, str] | None) -> tuple:
    """Each switch's value in ``environ`` (default ``os.environ``) as set, None where unset."""
    env = os.environ if environ is None else environ
    return tuple(env.get(var) for var in _VARIABLES.values())


_LAST: list = [None, Switches()]  # the raw values last parsed and their record (parsing only)


def read(environ: Mapping[str, str] | None = None) -> Switches:
    """Every switch from ``environ`` (default ``os.environ``), read now: a change to the
    environment shows at the next call (only the parsing of values seen last time is reused).

    Raises:
        ValueError: a value a switch does not take, e.g. ``MLX_RNN_PACKED='yes': expected 1 (the
            packed recurrent kernels, default) or 0`` (one line naming the variable and value).
    """
    raw = _raw_values(environ)
    if raw != _LAST[0]:
        parsed = Switches(**{name: _PARSERS[name]((value or "").strip()) for name, value in zip(_VARIABLES, raw)})
        _LAST[:] = [raw, parsed]
    return _LAST[1]


def describe(switches: Switches | None = None) -> str:
    """The switches not at their default as one line, ``"MLX_RNN_PACKED=0, MLX_RNN_NUM_THREADS=2"``
    in the field order ("" when none is set); ``switches`` default: :func:`read` now.

    Raises:
        ValueError: as :func:`read`.
    """
    switches = read() if switches is None else switches
    return ", ".join(f"{name}={value}" for name, value in switches.non_default().items())
