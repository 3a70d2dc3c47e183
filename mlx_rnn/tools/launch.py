"""``mlx.launch`` with an exit status: non-zero when any rank failed.

MLX's launcher (``mlx.launch``, 0.32) already stops the other ranks when one exits
non-zero or dies, but then exits 0 itself, so a script or CI job cannot tell a
failed run from a good one. This runs the very same launcher (same flags: ``-n``,
``--hosts``, ``--hostfile``, ``--backend``, ``--env`` ...) and afterwards exits with

- 0 when every rank exited 0;
- the exit code of a rank that exited with a positive code (e.g. 2 bad input,
  3 diverged, 130 interrupted), when there is one;
- otherwise 128 + N for a rank killed by signal N (e.g. 137 for SIGKILL).

Usage (``scripts/launch_mlx.py`` is the same)::

    python -m mlx_rnn.tools.launch -n 2 --backend ring -- python scripts/train_mlx.py --distributed ...

It uses MLX's launcher module ``mlx._distributed_utils.launch`` (not a public API);
if that is missing it runs the ``mlx.launch`` executable and passes its status on.
``--help`` (as the first argument) shows this launcher's own usage, not mlx.launch's.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys


def exit_status(codes) -> int:
    """The launcher's exit status from the ranks' ``Popen.returncode``\\ s (None: unknown -> 1)."""
    codes = [1 if c is None else int(c) for c in codes]
    positive = [c for c in codes if c > 0]
    if positive:
        return positive[0]
    # a rank killed by a signal; SIGTERM last, as the launcher sends it to the survivors
    signals = sorted((c for c in codes if c < 0), key=lambda c: c == -15)
    if signals:
        return 128 - signals[0]
    return 0


USAGE = """\
usage: {prog} [mlx.launch options] [--] COMMAND ...

Run COMMAND on N ranks with MLX's launcher (mlx.launch) and exit non-zero when any rank failed
(mlx.launch itself exits 0 then): 0 when every rank exited 0; else the exit code of a rank that
exited with a positive code (2 bad input, 3 diverged, 130 interrupted ...); else 128 + N for a
rank killed by signal N.

example:
  {prog} -n 2 --backend ring -- python scripts/train_mlx.py --distributed --task lm

options:
  -h, --help    show this message and exit (only as the first argument; later ones go to
                mlx.launch or to COMMAND)
  every other option is mlx.launch's own (-n N, --hosts, --hostfile, --backend, --env ...),
  passed on unchanged; `mlx.launch --help` lists them.
"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        from mlx_rnn.run.flags import prog_name

        text = USAGE.format(prog=prog_name("launch_mlx.py"))
        print(text if argv else text.split("\n\n", 1)[0] + "\n(see --help)", end="" if argv else "\n",
              file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    try:
        from mlx._distributed_utils import launch as mlx_launch
    except ImportError:
        exe = shutil.which("mlx.launch")
        if exe is None:
            print("error: mlx.launch not found (install mlx)", file=sys.stderr)
            return 2
        print("warning: MLX's launcher module was not found; running mlx.launch, whose exit status "
              "may be 0 even when a rank failed", file=sys.stderr)
        return subprocess.call([exe, *argv])

    procs = []
    base = mlx_launch.RemoteProcess

    class RecordingProcess(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            procs.append(self)

    mlx_launch.RemoteProcess = RecordingProcess
    old_argv = sys.argv
    sys.argv = ["mlx.launch", *argv]
    # Ctrl-C in the terminal reaches every local rank (and ssh -tt passes it to remote ones);
    # the trainers stop together and rank 0 saves resumable state. The launcher keeps
    # forwarding their output meanwhile instead of dying mid-way (MLX's own launcher then
    # hangs on its I/O threads); a third Ctrl-C aborts it.
    presses = []

    def on_sigint(signum, frame):
        presses.append(1)
        if len(presses) >= 3:
            raise KeyboardInterrupt

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        rc = mlx_launch.main()
    except SystemExit as e:  # argparse errors and the like
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGINT, old_handler)
        sys.argv = old_argv
        mlx_launch.RemoteProcess = base
    if isinstance(rc, int) and rc != 0:
        return rc
    return exit_status([p.process.returncode for p in procs])


if __name__ == "__main__":
    sys.exit(main())
