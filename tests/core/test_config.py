"""The one typed configuration (mlx_rnn/core/config.py): built once, frozen, checked, and written
to config.json exactly as the trainers wrote it before it existed.

``fixtures/config-*.json`` are config.json files written by the trainers of 2026-12-06 (before
the typed configuration; only their paths were rewritten): a two-task run's classifier and LM,
an LM on one's own text, a classifier started from an LM, an LM without calibration.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core.config import TASK_DEFAULTS, ModelConfig, RunConfig, make_config
from mlx_rnn.run.flags import build_parser, config_from_flags
from tests.conftest import ROOT

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("config-*.json"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_a_checkpoint_config_written_before_the_change_is_written_back_byte_for_byte(path, tmp_path):
    raw = json.loads(path.read_text())
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_bytes(path.read_bytes())
    cfg = ckpt.read_config(tmp_path / "ck")
    assert isinstance(cfg, RunConfig) and cfg.task == raw["task"] and cfg.hidden_size == raw["hidden_size"]
    writer = {k: raw[k] for k in ("framework", "framework_version")}
    ckpt.save_checkpoint(tmp_path / "out", {}, cfg.to_json(writer, best_epoch=raw["best_epoch"]), write_weights=False)
    assert (tmp_path / "out" / "config.json").read_bytes() == path.read_bytes()


def test_the_flags_give_the_defaults_with_the_given_ones_on_top():
    args = build_parser("mlx").parse_args(["--hidden-size", "256", "--seq-len", "50", "--prefix-weight", "0.5"])
    lm, classify = config_from_flags(args, "lm"), config_from_flags(args, "classify")
    assert lm == make_config("lm", hidden_size=256, seq_len=50)  # --prefix-weight is the classifier's
    assert classify.seq_len == 20 and classify.prefix_weight == 0.5 and classify.hidden_size == 256
    assert lm.calibrate is True and lm.prefix_weight is None and classify.calibrate is None
    assert lm.model == ModelConfig(27, 512, 256, 2, 0.5, "lstm", 0.0, None)
    with pytest.raises(ValueError, match=r"^--dropout must be in \[0, 1\) \(got 1\.5\)$"):
        config_from_flags(build_parser("mlx").parse_args(["--dropout", "1.5"]), "lm")


def test_the_configuration_is_frozen_and_replace_checks_what_changes():
    cfg = make_config("classify")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden_size = 7
    assert cfg.replace(hidden_size=7).hidden_size == 7 and cfg.hidden_size == TASK_DEFAULTS["classify"]["hidden_size"]
    with pytest.raises(ValueError, match="--epochs must be between 1"):
        cfg.replace(epochs=0)
    with pytest.raises(ValueError, match="vocab has 3 symbols but vocab_size is 27"):
        cfg.replace(vocab="ab ")
    assert cfg.replace(vocab="ab ", vocab_size=3).vocab_size == 3
    with pytest.raises(ValueError, match="unknown settings colour"):
        make_config("lm", colour="red")
    with pytest.raises(ValueError, match="unknown task"):
        make_config("translate")


def test_the_model_part_keeps_what_the_constructors_take():
    m = make_config("lm", dropout=0.3, input_dropout=None, cell="gru").model
    assert (m.cell, m.dropout, m.embedding_dropout) == ("gru", 0.3, 0.3)
    assert make_config("lm", dropout=0.3, input_dropout=0.1).model.embedding_dropout == 0.1


def test_a_hand_written_checkpoint_config_with_only_the_model_keys_loads(tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text(json.dumps(dict(
        format_version=1, task="lm", vocab="ab ", vocab_size=3, embed_dim=4, hidden_size=5, num_layers=1)))
    cfg = ckpt.read_config(tmp_path / "ck")
    assert (cfg.vocab_size, cfg.hidden_size, cfg.lr) == (3, 5, TASK_DEFAULTS["lm"]["lr"])


def _takes_args(tree: ast.AST) -> list[str]:
    """Functions with a parameter called ``args`` (an argparse namespace, by this project's habit)."""
    return [f.name for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any(a.arg == "args" for a in f.args.args + f.args.kwonlyargs)]


def test_no_argparse_namespace_outside_run_and_the_tools():
    """argparse is imported by run/ (the trainers' flags) and the tools' own command lines only,
    and no function of the library (core/, the frameworks) takes a namespace."""
    offenders = []
    for path in sorted((ROOT / "mlx_rnn").rglob("*.py")) + sorted((ROOT / "torch_ref").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("mlx_rnn/run/", "mlx_rnn/tools/")):
            continue
        tree = ast.parse(path.read_text())
        imports = {n.name for node in ast.walk(tree) if isinstance(node, ast.Import) for n in node.names}
        imports |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        if "argparse" in imports or _takes_args(tree):
            offenders.append(rel)
    assert offenders == []
