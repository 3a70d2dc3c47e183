"""The environment switches, read and validated in one place (mlx_rnn/core/switches.py): each
switch's default and values, junk refused in one line naming the variable, describe(), and a
fresh read at every call."""

from __future__ import annotations

import ast
from pathlib import Path
import subprocess
import sys

import pytest

from mlx_rnn.core import switches
from mlx_rnn.core.switches import Switches, describe, read

ROOT = Path(__file__).resolve().parents[2]  # the repository

#: (variable, field, [(value in the environment, value read)], [junk])
CASES = [
    ("MLX_RNN_LSTM_IMPL", "lstm_impl", [("native", "native"), (" OP ", "op"), ("reference", "reference"),
                                        ("auto", "auto"), ("", "auto")], ["turbo", "1", "fast"]),
    ("MLX_RNN_LSTM_ACT", "lstm_act", [("exact", "exact"), ("Approx", "approx"), ("", "auto")], ["fast", "0"]),
    ("MLX_RNN_LAYERS", "layers", [("mlx", "mlx"), ("AUTO", "auto"), ("", "auto")], ["fast", "native"]),
    ("MLX_RNN_ADAMW", "adamw", [("mlx", "mlx"), ("auto", "auto"), (" ", "auto")], ["fast", "fused"]),
    ("MLX_RNN_NUM_THREADS", "num_threads", [("3", 3), (" 1 ", 1), ("", None)],
     ["0", "-2", "2.5", "two", "9" * 5000]),
    ("MLX_RNN_PACKED", "packed", [("0", False), ("1", True), ("", True)], ["yes", "2", "true"]),
    ("MLX_RNN_CPU_FUSION", "cpu_fusion", [("1", "1"), (" 0 ", "0"), ("AUTO", "auto"), ("", "auto")], ["yes", "on"]),
    ("MLX_RNN_BLAS", "blas", [("reference", "reference"), ("/opt/lib/libopenblas.so.0", "/opt/lib/libopenblas.so.0"),
                              ("", None)], []),
    ("MLX_RNN_FAULT", "fault", [("1:3:exit", "1:3:exit"), ("", None)], []),
]


def test_every_field_is_a_switch_with_a_default():
    assert {f for _, f, _, _ in CASES} == set(Switches.__dataclass_fields__)
    assert read({}) == Switches()
    assert Switches().cpu_fusion == "auto" and Switches().packed is True and Switches().num_threads is None
    with pytest.raises(AttributeError):  # frozen
        read({}).packed = False


@pytest.mark.parametrize("var, field, good, junk", CASES, ids=[c[0] for c in CASES])
def test_each_switch(var, field, good, junk):
    assert getattr(read({}), field) == getattr(Switches(), field)
    for raw, value in good:
        assert getattr(read({var: raw}), field) == value, raw
        assert switches.read_one(field, {var: raw}) == value
    for raw in junk:
        with pytest.raises(ValueError) as info:
            read({var: raw})
        message = str(info.value)
        assert message.startswith(f"{var}=") and "expected" in message and "\n" not in message, message


@pytest.mark.parametrize("var, raw, message", [
    ("MLX_RNN_LSTM_IMPL", "Turbo", "MLX_RNN_LSTM_IMPL='turbo': expected one of auto, native, op, reference"),
    ("MLX_RNN_LSTM_ACT", "fast", "MLX_RNN_LSTM_ACT='fast': expected auto, exact or approx"),
    ("MLX_RNN_LAYERS", "fast", "MLX_RNN_LAYERS='fast': expected auto or mlx"),
    ("MLX_RNN_ADAMW", "fast", "MLX_RNN_ADAMW='fast': expected auto or mlx"),
    ("MLX_RNN_NUM_THREADS", " 0 ", "MLX_RNN_NUM_THREADS='0': expected a positive integer"),
    ("MLX_RNN_PACKED", "yes", "MLX_RNN_PACKED='yes': expected 1 (the packed recurrent kernels, default) or 0"),
    ("MLX_RNN_CPU_FUSION", "yes", "MLX_RNN_CPU_FUSION='yes': expected auto (default: no fused kernels where the "
                                  "native recurrence serves a CPU run), 1 (fused kernels, compiled at first use) "
                                  "or 0 (none)"),
])
def test_the_messages_name_the_variable_the_value_and_the_values_allowed(var, raw, message):
    with pytest.raises(ValueError) as info:
        read({var: raw})
    assert str(info.value) == message


def test_one_switch_alone_does_not_check_the_others():
    env = {"MLX_RNN_BLAS": "reference", "MLX_RNN_PACKED": "yes"}
    assert switches.read_one("blas", env) == "reference"
    with pytest.raises(ValueError, match="MLX_RNN_PACKED"):
        read(env)
    with pytest.raises(KeyError):
        switches.read_one("no_such_switch", env)


def test_describe_lists_the_switches_not_at_their_default():
    assert describe(Switches()) == "" and describe(read({"MLX_RNN_LSTM_IMPL": "auto", "MLX_RNN_PACKED": "1"})) == ""
    sw = read({"MLX_RNN_PACKED": "0", "MLX_RNN_LSTM_IMPL": "op", "MLX_RNN_NUM_THREADS": "2",
               "MLX_RNN_CPU_FUSION": "1", "MLX_RNN_BLAS": "reference", "OTHER": "x"})
    assert describe(sw) == ("MLX_RNN_LSTM_IMPL=op, MLX_RNN_NUM_THREADS=2, MLX_RNN_PACKED=0, "
                            "MLX_RNN_CPU_FUSION=1, MLX_RNN_BLAS=reference")
    assert sw.non_default() == {"MLX_RNN_LSTM_IMPL": "op", "MLX_RNN_NUM_THREADS": "2", "MLX_RNN_PACKED": "0",
                                "MLX_RNN_CPU_FUSION": "1", "MLX_RNN_BLAS": "reference"}


def test_read_fresh_at_every_call(monkeypatch):
    for var, *_ in CASES:
        monkeypatch.delenv(var, raising=False)
    assert read() == Switches() and describe() == ""
    monkeypatch.setenv("MLX_RNN_PACKED", "0")
    assert read().packed is False and describe() == "MLX_RNN_PACKED=0"
    monkeypatch.setenv("MLX_RNN_PACKED", "1")
    assert read().packed is True and describe() == ""
    monkeypatch.setenv("MLX_RNN_ADAMW", "junk")
    with pytest.raises(ValueError, match="MLX_RNN_ADAMW='junk'"):
        describe()


def test_read_fresh_from_any_mapping_standing_for_os_environ(monkeypatch):
    """read() looks into os.environ's own dict (no KeyError per unset variable); another mapping
    in its place is read through .get."""
    for var, *_ in CASES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLX_RNN_BLAS", "/opt/lib/libblis.so.4")
    monkeypatch.setenv("MLX_RNN_NUM_THREADS", "3")
    assert read() == Switches(blas="/opt/lib/libblis.so.4", num_threads=3)
    monkeypatch.setattr(switches.os, "environ", {"MLX_RNN_PACKED": "0"})
    assert read() == Switches(packed=False)


def test_the_module_imports_only_the_standard_library():
    """The BLAS preload reads its switch here before mlx.core is imported: nothing of numpy,
    mlx or torch may come with it."""
    tree = ast.parse((ROOT / "mlx_rnn/core/switches.py").read_text())
    imported = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    assert imported <= {"__future__", "dataclasses", "os", "typing"}, imported
    code = ("import sys; import mlx_rnn.core.switches; "
            "print(sorted(m for m in ('numpy', 'mlx', 'mlx.core', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_no_other_module_reads_a_switch_from_the_environment():
    """Every module asks the record: no ``os.environ``/``os.getenv`` read of an MLX_RNN_*
    switch (or of a constant naming one) outside core/switches.py."""
    names = {"MLX_RNN_" + n for n in ("LSTM_IMPL", "LSTM_ACT", "LAYERS", "ADAMW", "NUM_THREADS", "PACKED",
                                      "CPU_FUSION", "BLAS", "FAULT")}
    aliases = {"IMPL_ENV", "ENV_VAR", "THREADS_ENV", "PACKED_ENV", "FUSION_ENV", "FAULT_ENV"}
    offenders = []
    for path in list((ROOT / "mlx_rnn").rglob("*.py")) + list((ROOT / "torch_ref").rglob("*.py")):
        if path.name == "switches.py" or "tools" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and node.args:
                arg = ast.unparse(node.args[0])
                if arg.strip("'\"") in names or arg.split(".")[-1] in aliases:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_the_run_header_names_the_switches_set(monkeypatch):
    pytest.importorskip("mlx.core")
    from mlx_rnn.train import describe_backend

    for var, *_ in CASES:
        monkeypatch.delenv(var, raising=False)
    assert "switches:" not in describe_backend()
    monkeypatch.setenv("MLX_RNN_ADAMW", "mlx")
    monkeypatch.setenv("MLX_RNN_LSTM_ACT", "exact")
    line = describe_backend()
    assert line.endswith("; switches: MLX_RNN_LSTM_ACT=exact, MLX_RNN_ADAMW=mlx") and "mlx.optimizers AdamW" in line
    monkeypatch.setenv("MLX_RNN_ADAMW", "fast")
    with pytest.raises(ValueError, match="MLX_RNN_ADAMW='fast'"):
        describe_backend()
