"""The benchmark's worker processes, driven from the parent (``scripts/benchmark.py``).

:class:`Worker` is one framework x configuration process (:mod:`mlx_rnn.tools.bench.worker`),
talked to over stdin/stdout; :func:`time_config` starts one per framework, lets each warm up
(not timed) and asks them for the timed repeats in turn, A B A B ..., so that slow phases of a
shared machine hit every framework alike. :class:`Timing` says how a configuration is timed.
Framework-neutral: this module imports neither mlx nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from mlx_rnn.run.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_DIVERGED
from .names import BASE_FRAMEWORK, MARK, SIZE_KEYS, VARIANT_ENV
from .trust import machine_sample, window

ROOT = Path(__file__).resolve().parents[3]  # the repository root (mlx_rnn/tools/bench/<file>)
#: Pause before each timed repeat, so the previous worker's spinning BLAS/OpenMP threads go to sleep.
SETTLE_S = 0.25


class WorkerError(RuntimeError):
    """A worker failed; ``kind`` is "bad input", "diverged" or "failure"."""

    def __init__(self, message: str, kind: str = "failure"):
        super().__init__(message)
        self.kind = kind

    @property
    def exit_code(self) -> int:
        """The benchmark's exit code for it (read by :func:`mlx_rnn.run.errors.exit_code`): 2 bad
        input, 3 diverged, 1 another failure."""
        return {"bad input": EXIT_BAD_INPUT, "diverged": EXIT_DIVERGED}.get(self.kind, EXIT_CHECK_FAILED)


@dataclass(frozen=True)
class Timing:
    """How a configuration is timed: what every worker is told.

    ``devices``: the device flag per base framework (``{"mlx": "auto", "torch": "cpu"}``);
    ``batches``: timed batches per repeat, 0 for whole epochs; ``warmup_batches``: untimed
    batches first (with ``batches``; else the warm-up is one epoch); ``sgemm_n``: the matrix
    size of the sgemm measurement; ``thread_env``: thread-count variables for the workers;
    ``tf32``: allow TF32 in both frameworks' float32 GPU products (``--tf32``; default full float32).
    """

    repeats: int
    devices: dict
    seed: int = 0
    sgemm_n: int = 1024
    data_dir: str | None = None
    thread_env: dict = field(default_factory=dict)
    synthetic: bool = False
    batches: int = 0
    warmup_batches: int = 0
    tf32: bool = False

    @classmethod
    def from_args(cls, args, thread_env: dict) -> "Timing":
        """The benchmark's flags (``--repeats``, ``--device-mlx`` ...) as a Timing (whole epochs, real data)."""
        return cls(repeats=args.repeats, devices={"mlx": args.device_mlx, "torch": args.device_torch},
                   seed=args.seed, sgemm_n=args.sgemm_n, tf32=args.tf32,
                   data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None, thread_env=thread_env)


class Worker:
    """One framework x configuration process, driven over stdin/stdout."""

    def __init__(self, framework: str, name: str, settings: dict, timing: Timing):
        self.framework, self.name = framework, name
        self.base = BASE_FRAMEWORK[framework]
        sizes = {k: settings[k] for k in SIZE_KEYS}
        cmd = [sys.executable, "-m", "mlx_rnn.tools.bench.worker", "--framework", self.base, "--task", settings["task"],
               "--settings", json.dumps(sizes), "--device", timing.devices[self.base],
               "--repeats", str(timing.repeats), "--seed", str(timing.seed), "--sgemm-n", str(timing.sgemm_n)]
        if timing.batches:
            cmd += ["--batches", str(timing.batches), "--warmup-batches", str(timing.warmup_batches)]
        if timing.tf32:
            cmd.append("--tf32")
        if timing.synthetic:
            cmd.append("--synthetic")
        elif timing.data_dir:
            cmd += ["--data-dir", timing.data_dir]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.update(timing.thread_env)
        env.update(VARIANT_ENV.get(framework, {}))
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)

    def _stderr_tail(self, n: int = 8) -> str:
        self.stderr.seek(0)
        lines = [ln.rstrip() for ln in self.stderr.read().splitlines() if ln.strip()]
        return " | ".join(lines[-n:])

    def read(self) -> dict:
        """The next message; WorkerError if the worker reports an error or dies."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait()
                tail = self._stderr_tail()
                raise WorkerError(f"[{self.name}] {self.framework} worker exited with code {rc}"
                                  + (f": {tail}" if tail else ""))
            if not line.startswith(MARK):
                continue
            msg = json.loads(line[len(MARK):])
            if msg.get("event") == "error":
                self.proc.wait()
                text = str(msg.get("message")).replace("--device ", f"--device-{self.base} ")
                raise WorkerError(f"[{self.name}] {self.framework}: {text}", msg.get("kind", "failure"))
            return msg

    def send(self, command: str) -> None:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # read() reports the exit

    def finish(self) -> dict:
        self.send("quit")
        msg = self.read()
        self.proc.wait()
        self.stderr.close()
        return msg

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def time_config(name: str, settings: dict, frameworks, timing: Timing, log) -> tuple[dict, dict, dict, dict]:
    """Start one worker per framework, run ``timing.repeats`` timed repeats A B A B ..., stop them.

    Returns (ready messages, timed runs, final messages), each keyed by framework, and the timed
    phase's :func:`mlx_rnn.tools.bench.trust.window` (other processes' CPU use from the workers'
    being ready to their end, for the judgement of the run); a timed run is
    ``{"time_s": synchronised seconds, "steps": training steps, ...}``.

    Raises:
        WorkerError: a worker reported an error or died.
    """
    workers, ready = [], {}
    warmup = (f"{timing.warmup_batches} batch{'es' if timing.warmup_batches != 1 else ''}" if timing.batches
              else "1 epoch")
    try:
        for fw in frameworks:
            log(f"[{name}] {fw}: starting, warm-up {warmup} (not timed)")
            w = Worker(fw, name, settings, timing)
            workers.append(w)
            msg = w.read()
            msg["startup_s"] = time.perf_counter() - w.t0
            ready[fw] = msg
            log(f"[{name}] {fw} {msg['backend']['version']} on {msg['device']}: ready in {msg['startup_s']:.1f} s "
                f"(warm-up {msg['warmup_steps']} steps {msg['warmup_s']:.1f} s); sgemm "
                f"{msg['sgemm_gflops']:.1f} GFLOP/s")
        runs: dict[str, list[dict]] = {fw: [] for fw in frameworks}
        before = machine_sample()  # outside every timer, as the samples below
        for r in range(timing.repeats):
            for w in workers:  # A B A B ...
                time.sleep(SETTLE_S)
                w.send("run")
                msg = w.read()
                runs[w.framework].append(msg)
                log(f"[{name}] repeat {r + 1}/{timing.repeats} {w.framework}: {msg['steps']} steps in "
                    f"{msg['time_s']:.3f} s")
        finals = {w.framework: w.finish() for w in workers}
    finally:
        for w in workers:
            w.kill()
    # the workers' CPU time before `before` (they are waited for now, so `after` holds all of it)
    spent_before = sum(msg.get("cpu_s", 0.0) for msg in ready.values())
    return ready, runs, finals, window(name, before, machine_sample(), spent_before)
