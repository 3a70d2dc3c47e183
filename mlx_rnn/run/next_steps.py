"""The last lines of a trainer run: where its checkpoints are and the commands that use them.

Printed on stderr after the result JSON (stdout stays the epoch lines and the JSON), by rank 0,
for every task whose checkpoint directory holds a committed checkpoint (``config.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
import shlex
import sys

#: the scripts of a source checkout (absent from an installed wheel: the console commands then)
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"  # mlx_rnn/run/next_steps.py
CONSOLE = {"sample": "mlx-rnn-sample", "evaluate": "mlx-rnn-evaluate"}


def _short(path) -> str:
    """``path`` relative to the current directory when it lies below it, else absolute."""
    p = Path(path).absolute()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def command(name: str) -> str | None:
    """How to start tool ``name`` (sample, evaluate, compare) from here: this interpreter (as
    ``.venv/bin/python`` when it lies below the current directory, else ``python``) and the
    checkout's ``scripts/NAME.py``, else the console command; None when there is neither."""
    script = SCRIPTS / f"{name}.py"
    if not script.is_file():
        return CONSOLE.get(name)
    exe = _short(sys.executable) if sys.executable else "python"
    py = exe if not os.path.isabs(exe) and exe != "." else "python"
    return f"{shlex.quote(py)} {shlex.quote(_short(script))}"


def next_steps(framework: str, args, plans) -> list[str]:
    """The lines that name each saved checkpoint and the sample / evaluate / compare commands for
    it (``framework``: the trainer's, passed on as ``--framework``; ``args``: its flags, for
    ``--data-dir``; ``plans``: the run's :class:`mlx_rnn.run.plan.TaskPlan` list). Empty when
    nothing was saved."""
    saved = {p.task: p.save_dir for p in plans
             if p.save_dir is not None and (Path(p.save_dir) / "config.json").is_file()}
    if not saved:
        return []
    fw = " --framework torch" if framework == "torch" else ""
    data = f" --data-dir {shlex.quote(str(args.data_dir))}" if args.data_dir else ""
    lines = [f"[{task}] checkpoint saved in {d}" for task, d in saved.items()]
    lines.append("next:")
    for task, d in saved.items():
        ck = shlex.quote(str(d))
        if task == "lm" and command("sample"):
            lines.append(f"  {command('sample')} --checkpoint {ck} --prime ' ' --length 300{fw}")
        if command("evaluate"):
            lines.append(f"  {command('evaluate')} --checkpoint {ck}{data}{fw}")
    if command("compare"):  # one comparison of both tasks when they share a root
        roots = {Path(d).parent for d in saved.values()} if len(plans) > 1 else set()
        targets = [roots.pop()] if len(saved) > 1 and len(roots) == 1 else list(saved.values())
        for d in targets:
            lines.append(f"  {command('compare')} --checkpoint {shlex.quote(str(d))}{data}  # MLX vs PyTorch")
    return lines
