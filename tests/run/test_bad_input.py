"""Bad input to the real scripts: one line on stderr naming the file (and line:col where
there is one) and the cause, exit code 2, no traceback, nothing overwritten. Each case runs
train_mlx.py, train_torch.py and/or evaluate.py as a subprocess; bad input fails before any
training, so most runs take well under a second.

This module: bad data files, no data, --download, bad flags and output paths; corrupt,
truncated or mismatched checkpoints and diverging runs (exit 3) are in test_bad_checkpoint.py.
The generated data directory (``good_data``) is a fixture of conftest.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, DataError
from tests.synthetic import TINY, TRAINERS, error_line, fake_checkpoint, fingerprint, run_script

TC, TV = CLASSIFY_FILES["train_consonant"], CLASSIFY_FILES["train_vowel"]
DC, DV = CLASSIFY_FILES["dev_consonant"], CLASSIFY_FILES["dev_vowel"]
LM, LMDEV = LM_FILES["train"], LM_FILES["dev"]


def copy_data(good: Path, dst: Path) -> Path:
    shutil.copytree(good, dst)
    return dst


# ----- 1. bad data files ----------------------------------------------------------------
def _bad_char(p: Path):
    lines = p.read_text().split("\n")
    lines[2] = lines[2][:4] + "X" + lines[2][5:]
    p.write_text("\n".join(lines))


def _short_line(p: Path):
    lines = p.read_text().split("\n")
    lines[4] = lines[4][:19]
    p.write_text("\n".join(lines))


def _latin1(p: Path):
    raw = p.read_bytes()
    p.write_bytes(raw[:30] + b"\xe9" + raw[31:])


def _lm_newline(p: Path):
    t = p.read_text()
    p.write_text(t[:50] + "\n" + t[51:])


def _lm_capital(p: Path):
    t = p.read_text()
    p.write_text(t[:50] + "Q" + t[51:])


def _empty(p: Path):
    p.write_bytes(b"")


def _directory(p: Path):
    p.unlink()
    p.mkdir()


def _missing(p: Path):
    p.unlink()


# (file, corruption, task, expected message after "error: "; {p} is the file's path)
DATA_CASES = {
    "example-bad-char": (TV, _bad_char, "classify", r"{p}:3:5: character 'X' \(U\+0058\) is not in the vocabulary$"),
    "example-short-line": (DC, _short_line, "classify", r"{p}:5:20: line has 19 characters, expected exactly 20$"),
    "example-empty": (TC, _empty, "classify", r"{p}: file is empty$"),
    "example-directory": (DV, _directory, "classify", r"{p}: is a directory, expected a text file$"),
    "example-not-utf8": (TC, _latin1, "classify", r"{p}:2:10: not valid UTF-8 \(byte 0xe9\)$"),
    "lm-newline": (LM, _lm_newline, "lm", r"{p}:1:51: newline inside the text \(use --normalize .*\)$"),
    "lm-capital": (LMDEV, _lm_capital, "lm",
                   r"{p}:1:51: character 'Q' \(U\+0051\) is not in the vocabulary \(use --normalize .*\)$"),
    "lm-not-utf8": (LM, _latin1, "lm", r"{p}:1:31: not valid UTF-8 \(byte 0xe9\)$"),
    "lm-empty": (LMDEV, _empty, "lm", r"{p}: file is empty$"),
    "lm-missing": (LM, _missing, "lm",
                   r"{d}: data not found \(missing text8-100k.txt\); pass --data-dir DIR, set MLX_RNN_DATA=DIR, "
                   r"or run scripts/prepare_data.py .*"),
}


@pytest.mark.parametrize("script", TRAINERS)
@pytest.mark.parametrize("case", list(DATA_CASES))
def test_trainer_bad_data_file(script, case, good_data, tmp_path):
    name, corrupt, task, pattern = DATA_CASES[case]
    d = copy_data(good_data, tmp_path / "data")
    corrupt(d / name)
    proc = run_script(script, "--task", task, "--data-dir", d, "--epochs", "1", *TINY, "--save", tmp_path / "ck")
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert re.match("error: " + pattern.format(p=re.escape(str(d / name)), d=re.escape(str(d))), line), line
    assert not (tmp_path / "ck").exists()  # failed before training or writing anything


@pytest.mark.parametrize("script", TRAINERS)
def test_trainer_bad_example_file_fails_before_the_other_task_trains(script, good_data, tmp_path):
    """With --task both, a bad LM file is reported before the classifier trains."""
    d = copy_data(good_data, tmp_path / "data")
    _lm_capital(d / LM)
    proc = run_script(script, "--data-dir", d, "--epochs", "1", *TINY, "--save", tmp_path / "ck")
    assert proc.returncode == 2 and "character 'Q'" in error_line(proc)
    assert "epoch" not in proc.stdout and not (tmp_path / "ck").exists()


def test_classifier_says_why_it_has_no_heldout_figure(good_data, tmp_path):
    """An unreadable text8-dev.txt only drops the classifier's held-out figure, with a note naming it."""
    d = copy_data(good_data, tmp_path / "data")
    (d / LMDEV).write_bytes(b"\xff\xfe not text")
    proc = run_script("train_mlx", "--task", "classify", "--data-dir", d, "--epochs", "1", *TINY, "--no-save")
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"\[classify\] note: no held-out accuracy: {re.escape(str(d / LMDEV))}:1:1: not valid UTF-8",
                     proc.stderr), proc.stderr


EVAL_CASES = {
    "bad-char": ("classify", "--vowel", _bad_char, r"{p}:3:5: character 'X' \(U\+0058\) is not in the vocabulary$"),
    "short-line": ("classify", "--consonant", _short_line, r"{p}:5:20: line has 19 characters, expected exactly 20$"),
    "empty": ("classify", "--consonant", _empty, r"{p}: file is empty$"),
    "directory": ("classify", "--vowel", _directory, r"{p}: is a directory, expected a text file$"),
    "missing": ("classify", "--vowel", _missing, r"{p}: file not found$"),
    "not-utf8": ("lm", "--text", _latin1, r"{p}:1:31: not valid UTF-8 \(byte 0xe9\)$"),
    "newline": ("lm", "--text", _lm_newline, r"{p}:1:51: newline inside the text \(use --normalize .*\)$"),
    "capital": ("lm", "--text", _lm_capital, r"{p}:1:51: character 'Q' .* \(use --normalize .*\)$"),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_evaluate_bad_data_file(case, good_data, tmp_path):
    task, flag, corrupt, pattern = EVAL_CASES[case]
    d = copy_data(good_data, tmp_path / "data")
    ck = fake_checkpoint(tmp_path / "ck", task)
    if task == "classify":
        files = {"--consonant": d / DC, "--vowel": d / DV}
    else:
        files = {"--text": d / LMDEV}
    corrupt(files[flag])
    args = [a for kv in files.items() for a in map(str, kv)]
    proc = run_script("evaluate", "--checkpoint", ck, *args)
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert re.match("error: " + pattern.format(p=re.escape(str(files[flag]))), line), line


def test_evaluate_normalize(good_data, tmp_path):
    ck = fake_checkpoint(tmp_path / "ck", "lm")
    text = tmp_path / "any.txt"
    text.write_text("Hello, World!\r\nIt's 2024.\n", encoding="utf-8")
    bad = run_script("evaluate", "--checkpoint", ck, "--text", text)
    assert bad.returncode == 2 and ":1:1: character 'H'" in error_line(bad)
    ok = run_script("evaluate", "--checkpoint", ck, "--text", text, "--normalize")
    assert ok.returncode == 0, ok.stderr
    assert np.isfinite(json.loads(ok.stdout)["lm"]["perplexity"])


# ----- transparently accepted input, and --normalize, through a real (tiny) training run --------
@pytest.mark.parametrize("script", TRAINERS)
def test_trainer_accepts_crlf_bom_no_final_newline_and_normalizes(script, good_data, tmp_path):
    d = copy_data(good_data, tmp_path / "data")
    for name in (TC, TV, DC, DV):
        text = (d / name).read_text()
        (d / name).write_bytes(b"\xef\xbb\xbf" + text.rstrip("\n").replace("\n", "\r\n").encode())
    lm = (d / LM).read_text()
    (d / LM).write_text("The " + lm[:3000].upper() + "\r\n\r\n" + lm[3000:] + "\n", encoding="utf-8")
    bad = run_script(script, "--data-dir", d, "--epochs", "1", *TINY)
    assert bad.returncode == 2 and f"{d / LM}:1:1: character 'T'" in error_line(bad)
    out = tmp_path / "result.json"
    proc = run_script(script, "--data-dir", d, "--epochs", "1", *TINY, "--normalize", "--output-json", out, "--no-save")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["classify"]["total"] == 40  # every dev line read, the last one without its newline
    assert result["lm"]["config"]["normalize"] is True


# ----- 2. no data at all ---------------------------------------------------------------------
@pytest.mark.parametrize("how", ["default", "env", "flag"])
@pytest.mark.parametrize("script", TRAINERS + ("evaluate",))
def test_missing_data_dir_lists_the_ways_out(script, how, tmp_path):
    nowhere = tmp_path / "nowhere"
    env, args = {}, []
    if how == "env":
        env["MLX_RNN_DATA"] = str(nowhere)
    elif how == "flag":
        args = ["--data-dir", nowhere]
    if script == "evaluate":
        args += ["--checkpoint", fake_checkpoint(tmp_path / "ck", "lm")]
    proc = run_script(script, *args, cwd=tmp_path, env=env)  # cwd has no ./data
    assert proc.returncode == 2, proc.stderr
    where = "data" if how == "default" else str(nowhere)
    if script == "evaluate":  # one line
        line = error_line(proc)
        assert line.startswith(f"error: {where}: data directory not found; "), line
        for way in ("--data-dir DIR", "MLX_RNN_DATA=DIR", "scripts/prepare_data.py"):
            assert way in line, line
        return
    # a trainer with no data at all: what is missing and how to get it, in a few lines
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.rstrip("\n").split("\n")
    given_by = {"default": "the default ./data", "env": "from MLX_RNN_DATA", "flag": "from --data-dir"}[how]
    assert lines[0].startswith(f"error: {where}: data directory not found ({given_by}"), lines[0]
    assert 3 <= len(lines) <= 6 and all(ln.startswith("  ") for ln in lines[1:]), proc.stderr
    rest = "\n".join(lines[1:])
    for needle in ("needed: " + ", ".join(sorted(set(CLASSIFY_FILES.values()) | set(LM_FILES.values()))),
                   "--data-dir DIR", "MLX_RNN_DATA=DIR", "--download", f"scripts/prepare_data.py --out {where}",
                   "--train-text FILE"):
        assert needle in rest, (needle, proc.stderr)


@pytest.mark.parametrize("script", TRAINERS)
def test_empty_data_dir_lists_the_ways_out_and_a_partial_one_names_the_missing_files(script, good_data, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    proc = run_script(script, "--task", "lm", "--data-dir", d, *TINY)
    assert proc.returncode == 2
    first, *rest = proc.stderr.rstrip("\n").split("\n")
    assert first == f"error: {d}: none of the data files found (from --data-dir)", proc.stderr
    assert rest[0] == f"  needed: {LM}, {LMDEV}: text8 files of the course exercise" and len(rest) == 4, proc.stderr
    shutil.copy(good_data / LM, d / LM)  # some data there: one line naming what is missing
    proc = run_script(script, "--task", "lm", "--data-dir", d, *TINY)
    assert proc.returncode == 2
    assert error_line(proc).startswith(f"error: {d}: data not found (missing {LMDEV}); pass --data-dir DIR"), proc.stderr


# ----- --download (the preparation itself: core/test_prepare_data.py, core/test_prepare_download.py)
@pytest.fixture
def fake_prepare(monkeypatch, good_data):
    """Replace the download-and-build step with a copy of the generated data."""
    import mlx_rnn.core.prepare as prepare_mod

    calls = []

    def prepare(out_dir, **kw):
        calls.append((Path(out_dir), kw))
        shutil.copytree(good_data, out_dir, dirs_exist_ok=True)

    monkeypatch.setattr(prepare_mod, "prepare", prepare)
    return calls


def test_download_builds_missing_data_then_trains(fake_prepare, tmp_path, capsys):
    from mlx_rnn.run.cli import main

    d = tmp_path / "fresh"
    rc = main("mlx", ["--task", "classify", "--data-dir", str(d), "--download", "--epochs", "1", *TINY, "--no-save"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert [c[0] for c in fake_prepare] == [d] and (d / TC).is_file()
    assert "--download" in err
    # the data is there now: no second preparation
    assert main("mlx", ["--task", "classify", "--data-dir", str(d), "--download", "--epochs", "1", *TINY,
                        "--no-save"]) == 0
    assert len(fake_prepare) == 1


def test_download_offline_fails_fast_naming_the_file(monkeypatch, tmp_path, capsys):
    """The trainer's --download with a host that cannot be resolved: one attempt, exit 2,
    the message names the file it would keep; the data directory is not left behind."""
    import functools

    import mlx_rnn.core.prepare as prepare_mod
    from mlx_rnn.run.cli import main

    monkeypatch.setattr(prepare_mod, "prepare", functools.partial(prepare_mod.prepare,
                                                                  url="http://nonexistent.invalid/text8.zip"))
    d = tmp_path / "d"
    assert main("mlx", ["--data-dir", str(d), "--download", *TINY]) == 2
    err = capsys.readouterr().err
    assert "cannot resolve host 'nonexistent.invalid'" in err and str(d / "text8.zip") in err, err
    assert "retry" not in err and not d.exists()


def test_download_failures_exit_codes(monkeypatch, tmp_path, capsys):
    import mlx_rnn.core.prepare as prepare_mod
    from mlx_rnn.run.cli import main

    def offline(out_dir, **kw):
        raise DataError("http://example.invalid/text8.zip", "download failed (no network); rerun to try again")

    def bad_sum(out_dir, **kw):
        raise prepare_mod.ChecksumError(Path(out_dir) / "text8.zip", "sha1 mismatch")

    monkeypatch.setattr(prepare_mod, "prepare", offline)
    assert main("torch", ["--data-dir", str(tmp_path / "d"), "--download", *TINY]) == 2
    assert "download failed" in capsys.readouterr().err
    monkeypatch.setattr(prepare_mod, "prepare", bad_sum)
    assert main("torch", ["--data-dir", str(tmp_path / "d"), "--download", *TINY]) == 1
    assert "sha1 mismatch" in capsys.readouterr().err


# ----- 6. bad flags ----------------------------------------------------------------------------
BAD_FLAGS = {
    "negative-hidden": (["--hidden-size", "-1"], "--hidden-size must be at least 1"),
    "zero-embed": (["--embed-dim", "0"], "--embed-dim must be at least 1"),
    "zero-layers": (["--num-layers", "0"], "--num-layers must be at least 1"),
    "zero-batch": (["--batch-size", "0"], "--batch-size must be at least 1"),
    "zero-seq-len": (["--task", "lm", "--seq-len", "0"], "--seq-len must be at least 1"),
    "zero-epochs": (["--epochs", "0"], "--epochs must be between 1 and 100,000"),
    "huge-epochs": (["--epochs", "99999999999999999999"], "--epochs must be between 1 and 100,000"),
    "dropout-1": (["--dropout", "1"], "--dropout must be in [0, 1)"),
    "dropout-negative": (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    "lr-zero": (["--lr", "0"], "--lr must be positive"),
    "lr-inf": (["--lr", "inf"], "--lr must be a finite number"),
    "weight-decay-negative": (["--weight-decay", "-1"], "--weight-decay must not be negative"),
    "clip-nan": (["--clip-norm", "nan"], "--clip-norm must be a finite number"),
    "val-fraction": (["--val-fraction", "0.7"], "--val-fraction must be in (0, 0.5)"),
    "patience": (["--patience", "-1"], "--patience must not be negative"),
    "save-every": (["--save-every", "0"], "--save-every must be at least 1"),
    "warmup": (["--warmup-steps", "-5"], "--warmup-steps must not be negative"),
    "seed": (["--seed", "-1"], "--seed must be between 0 and 2^64 - 1"),
    "huge-seed": (["--seed", str(2**64)], "--seed must be between 0 and 2^64 - 1"),
    "not-an-int": (["--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    "bad-choice": (["--task", "nope"], "argument --task: invalid choice: 'nope'"),
    "unknown-flag": (["--bogus"], "unrecognized arguments: --bogus"),
    "seq-too-long": (["--task", "lm", "--seq-len", "100000"], "give no full training step"),
    "corpus-classify": (["--task", "classify", "--corpus", "text8", "{data}/text8-100k.txt"],
                        "--corpus gives the language model's training text"),
}


@pytest.mark.parametrize("case", list(BAD_FLAGS))
@pytest.mark.parametrize("script", TRAINERS)
def test_trainer_bad_flag(script, case, good_data, tmp_path):
    flags, message = BAD_FLAGS[case]
    flags = [f.replace("{data}", str(good_data)) for f in flags]
    proc = run_script(script, "--data-dir", good_data, *TINY, *flags, "--save", tmp_path / "ck")  # last flag wins
    assert proc.returncode == 2, proc.stderr
    assert message in error_line(proc)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("script", TRAINERS)
def test_trainer_device_flag(script, good_data):
    other = "mps" if script == "train_mlx" else "gpu"  # the other framework's device name
    proc = run_script(script, "--data-dir", good_data, *TINY[:-2], "--device", other)
    assert proc.returncode == 2 and "argument --device: invalid choice" in error_line(proc)


EVAL_FLAGS = {
    "no-checkpoint": ([], "give one of --checkpoint DIR or --zero-shot-lm DIR"),
    "framework": (["--checkpoint", "{ck}", "--framework", "jax"], "argument --framework: invalid choice"),
    "device": (["--checkpoint", "{ck}", "--device", "tpu"], "argument --device: invalid choice"),
    "device-other-framework": (["--checkpoint", "{ck}", "--device", "mps"], "--device mps is a PyTorch device"),
    "text-for-classifier": (["--checkpoint", "{ck}", "--text", "x.txt"], "is a classifier checkpoint"),
    "one-file": (["--checkpoint", "{ck}", "--vowel", "x.txt"], "give both --consonant and --vowel"),
}


@pytest.mark.parametrize("case", list(EVAL_FLAGS))
def test_evaluate_bad_flag(case, tmp_path):
    ck = fake_checkpoint(tmp_path / "ck", "classify")
    flags, message = EVAL_FLAGS[case]
    proc = run_script("evaluate", *[f.format(ck=ck) for f in flags])
    assert proc.returncode == 2, proc.stderr
    assert message in error_line(proc)


@pytest.mark.parametrize("script", TRAINERS + ("evaluate",))
def test_output_json_under_a_file(script, good_data, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "dir" / "result.json"
    if script == "evaluate":
        args = ["--checkpoint", fake_checkpoint(tmp_path / "ck", "lm"), "--data-dir", good_data]
    else:
        args = ["--data-dir", good_data, *TINY]
    proc = run_script(script, *args, "--output-json", out)
    assert proc.returncode == 2, proc.stderr
    assert error_line(proc) == f"error: --output-json {out}: {tmp_path / 'afile'} exists and is not a directory"
    proc = run_script(script, *args, "--output-json", tmp_path)
    assert proc.returncode == 2 and error_line(proc) == f"error: --output-json {tmp_path}: is a directory"


@pytest.mark.parametrize("script", TRAINERS)
def test_save_pointing_at_a_file_or_a_checkpoint(script, good_data, tmp_path):
    f = tmp_path / "afile"
    f.write_text("precious")
    for task in ("classify", "both"):
        proc = run_script(script, "--task", task, "--data-dir", good_data, *TINY, "--save", f)
        assert proc.returncode == 2, proc.stderr
        assert error_line(proc).startswith(f"error: --save {f}: {f} exists and is not a directory")
    assert f.read_text() == "precious"
    ck = fake_checkpoint(tmp_path / "ck", "lm")
    before = fingerprint(ck)
    proc = run_script(script, "--task", "lm", "--data-dir", good_data, *TINY, "--save", ck)
    assert proc.returncode == 2
    assert error_line(proc) == (f"error: --save {ck}: {ck} already holds a checkpoint; continue it with "
                                f"--resume {ck}, or save somewhere else")
    assert fingerprint(ck) == before
