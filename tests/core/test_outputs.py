"""Every output path checked before any work, with one rule: --save, --plot and
--output-json of the trainers, evaluate.py and benchmark.py; --plot writes the format its suffix
names and refuses an unknown suffix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_rnn.core.outputs import check_dir_output, check_file_output, check_plot_output
from tests.synthetic import TINY, fake_checkpoint, make_data_dir, run_script

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def test_one_rule_for_files_and_directories(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    check_file_output(tmp_path / "new" / "deeper" / "out.json")  # parents are created when written
    check_dir_output(tmp_path / "new" / "ck")
    with pytest.raises(ValueError, match=r"^--output-json .*: is a directory$"):
        check_file_output(tmp_path)
    with pytest.raises(ValueError, match=r"^--save .*: .*afile exists and is not a directory$"):
        check_dir_output(f)
    with pytest.raises(ValueError, match=r"afile exists and is not a directory$"):
        check_dir_output(f / "sub" / "ck")
    for check in (check_file_output, check_dir_output):
        with pytest.raises(ValueError, match=r"cannot write in /proc"):
            check("/proc/mlx-rnn-test/x")
    with pytest.raises(ValueError, match=r"^--plot x\.foo: unknown image format '\.foo' \(matplotlib writes .*\.pdf"):
        check_plot_output("x.foo")
    with pytest.raises(ValueError, match="no file suffix"):
        check_plot_output(tmp_path / "curves")
    check_plot_output(tmp_path / "c.svg")


@pytest.mark.parametrize("flags, needle", [
    (["--save", "{f}/ck"], "--save {f}/ck: {f} exists and is not a directory"),
    (["--save", "/proc/mlx-rnn-ck"], "--save /proc/mlx-rnn-ck: cannot write in /proc"),
    (["--plot", "{tmp}"], "--plot {tmp}: is a directory"),
    (["--plot", "{tmp}/d.png"], "--plot {tmp}/d.png: is a directory"),
    (["--plot", "{tmp}/c.bmpx"], "unknown image format '.bmpx'"),
    (["--output-json", "{f}/r.json"], "--output-json {f}/r.json: {f} exists and is not a directory"),
])
def test_trainer_refuses_a_bad_output_path_before_training(tmp_path, data, flags, needle):
    f = tmp_path / "afile"
    f.write_text("x")
    (tmp_path / "d.png").mkdir()
    flags = [a.format(f=f, tmp=tmp_path) for a in flags]
    proc = run_script("train_mlx", "--task", "classify", "--epochs", "1", "--data-dir", data, *flags, *TINY)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and needle.format(f=f, tmp=tmp_path) in err[0]
    assert "epoch" not in proc.stdout and not list(tmp_path.glob(".*.tmp*"))


@pytest.mark.parametrize("suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")])
def test_plot_writes_the_format_its_suffix_names(tmp_path, data, suffix, magic):
    out = tmp_path / "sub" / f"curves{suffix}"  # the parent is created
    proc = run_script("train_torch", "--task", "classify", "--epochs", "1", "--data-dir", data, "--plot", out, *TINY,
                      "--no-save")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(magic) and not list(out.parent.glob(".*"))


def test_evaluate_and_benchmark_use_the_same_rule(tmp_path, data):
    f = tmp_path / "afile"
    f.write_text("x")
    ck = fake_checkpoint(tmp_path / "ck", "lm")
    proc = run_script("evaluate", "--checkpoint", ck, "--data-dir", data, "--output-json", f / "r.json")
    assert proc.returncode == 2 and f"{f} exists and is not a directory" in proc.stderr
    from mlx_rnn.tools.bench.benchmark import main

    assert main(["--plot", str(tmp_path / "b.xyz"), "--quick"]) == 2
    assert main(["--output-json", str(f / "b.json"), "--quick"]) == 2


def test_special_files_are_refused_and_links_written_through(tmp_path):
    """An atomic write renames a new file over the path: a FIFO or device there would be replaced,
    not written to, so it is refused; a symbolic link is followed, its target replaced."""
    import os

    from mlx_rnn.core.checkpoint import atomic_write_json
    from mlx_rnn.core.outputs import save_figure

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"^--output-json .*fifo: is a FIFO \(named pipe\); .* name a regular file$"):
        check_file_output(fifo)
    with pytest.raises(ValueError, match=r"^--plot /dev/null: is a character device;"):
        check_plot_output("/dev/null")
    real = tmp_path / "real" / "res.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "res.json"
    link.symlink_to(real)
    check_file_output(link)
    atomic_write_json(link, {"a": 1}, follow_links=True)  # a file the user named: written through
    assert link.is_symlink() and real.read_text() == '{\n  "a": 1\n}\n'
    inner = tmp_path / "ck-link.json"  # the project's own files (checkpoints): the link is replaced
    inner.symlink_to(real)
    atomic_write_json(inner, {"b": 2})
    assert not inner.is_symlink() and real.read_text() == '{\n  "a": 1\n}\n'
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    with pytest.raises(ValueError, match=r"^--output-json .*loop\.json: a symbolic link that loops$"):
        check_file_output(loop)
    dangling = tmp_path / "later.png"
    dangling.symlink_to(tmp_path / "real" / "later.png")
    check_plot_output(dangling)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    save_figure(fig, dangling)
    plt.close(fig)
    assert dangling.is_symlink() and (tmp_path / "real" / "later.png").read_bytes()[:4] == b"\x89PNG"
