"""The trainer program both ``scripts/train_mlx.py`` and ``scripts/train_torch.py`` call.

Framework-neutral: it reads the data, asks a framework's ``train`` module
(:mod:`mlx_rnn.train` or :mod:`torch_ref.train`, through :mod:`mlx_rnn.core.backend`) for a
``Trainer``, runs the epochs (:mod:`mlx_rnn.run.fit`), keeps the best weights on the
validation slice, writes checkpoints, resumable state and ``metrics.jsonl``, and builds the
result JSON of docs/design.md.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
import sys
import time

from mlx_rnn.core import backend
from mlx_rnn.core import distributed
from mlx_rnn.core.config import RunConfig
from mlx_rnn.core.savedir import remove_if_empty, unlock_all
from .errors import EXIT_OK, Interrupted, log, print_result, report_exit
from .evaluation import print_heldout, zero_shot_bundle
from .fit import Outputs, train_task
from .flags import LOG_EVERY_DEFAULT, build_parser
from .next_steps import next_steps
from .plan import TaskPlan, plan_run, save_pending
from .stop import StopFlag, deferred_signals, terminate_as_interrupt


def main(framework: str, argv=None) -> int:
    """Entry point of both trainers; returns the process exit code (docs/design.md)."""
    t0 = time.perf_counter()
    args = build_parser(framework).parse_args(argv)
    old_term = terminate_as_interrupt()  # before training: SIGTERM ends the run like Ctrl-C (training: StopFlag)
    new_save_dir = bool(args.save) and not Path(args.save).exists()  # removed again if the run saves nothing
    plans: list[TaskPlan] = []
    try:
        run_tasks(framework, args, t0, plans)
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as e:  # bad input 2, diverged 3, Ctrl-C 130 ... (run/errors.py)
        return report_exit(e)
    finally:
        unlock_all()  # the checkpoint directories' locks (the end of the process drops them too)
        terminate_as_interrupt(old_term)
        if plans and not (args.save or args.resume) and plans[0].root is not None and distributed.current().is_main:
            remove_if_empty(plans[0].root)  # a default directory the run wrote nothing into (bad input, divergence)
        if new_save_dir and distributed.current().is_main:
            remove_if_empty(args.save, parent=False)  # a --save directory this run created and wrote nothing into


def run_tasks(framework: str, args, t0: float, plans: list | None = None) -> dict:
    """Plan, then train (or, with ``--zero-shot-lm``, score) every task; print and return the
    result JSON, then say where the checkpoints are and what to run next. ``t0``: the process's
    start (``time.perf_counter()``), for the total time; ``plans``: filled with the run's plans.

    Raises:
        what :func:`main` turns into exit codes (bad input, CheckFailed, Diverged, Interrupted).
    """
    with deferred_signals():  # a signal during the framework's import is delivered after it
        fw = backend.train_module(framework)
    dist = distributed.init(framework, args.distributed, args.device, args.dist_timeout)  # --distributed: rank and world size
    plans = plans if plans is not None else []
    plans.extend(plan_run(framework, args))
    device = fw.select_device(args.device)
    fw.set_tf32(args.tf32)  # before the first matrix product (MLX reads its switch once)
    multi = len(plans) > 1
    # --no-save: Ctrl-C or SIGTERM still leaves resumable state, here
    root = plans[0].root or Path("checkpoints") / f"interrupted-{datetime.now():%Y%m%d-%H%M%S}"
    result = {}
    with StopFlag() as stop:
        for i, plan in enumerate(plans):
            t_task = time.perf_counter()
            plan.cfg = plan.cfg.replace(device=device, precision=fw.precision())
            task, cfg = plan.task, plan.cfg
            with deferred_signals():  # the first describe_backend() loads the native extension
                backend_line = fw.describe_backend()
            distributed.print0(f"[{task}] {fw.FRAMEWORK} {fw.framework_version()} on {device}, "
                               f"{fw.describe_precision()}; "
                               f"{backend_line}" + (f"; data-parallel over {dist.world_size} ranks "
                                                             f"({dist.backend})" if dist.enabled else ""))
            if task == "classify" and args.zero_shot_lm:
                result[task] = zero_shot_bundle(fw, args.zero_shot_lm, plan.data, device)
                result[task]["total_time_s"] = time.perf_counter() - t_task + plan.read_time_s
                print_heldout(result[task], "zero-shot from the LM")
                continue
            bundle = _train_plan(fw, args, plans, i, root, stop)
            bundle["total_time_s"] = (time.perf_counter() - t0 if not multi
                                      else plan.read_time_s + time.perf_counter() - t_task)
            if dist.enabled:
                bundle["distributed"] = {"world_size": dist.world_size, "backend": dist.backend,
                                         "global_batch_size": cfg.batch_size * dist.world_size}
            result[task] = bundle
            if task == "classify" and dist.is_main:
                _print_classify_notes(bundle, cfg)
    if dist.is_main:
        print_result(result, args.output_json)
        for line in next_steps(framework, args, plans):
            print(line, file=sys.stderr, flush=True)
    if dist.enabled:
        # PyTorch's process group torn down before interpreter exit (no abort at exit)
        backend.parallel_module(framework).shutdown()
    return result


def _outputs(args, plan: TaskPlan, multi: bool, root: Path) -> Outputs:
    """Where ``plan``'s task writes (``multi``: one of two tasks, under ``root``); distributed: only
    rank 0 prints, shows progress and writes."""
    main_rank = distributed.current().is_main
    plot_path = None
    if args.plot and main_rank:
        plot_path = Path(args.plot)
        if multi:  # PATH-classify.png and PATH-lm.png
            plot_path = plot_path.with_name(f"{plot_path.stem}-{plan.task}{plot_path.suffix or '.png'}")
    return Outputs(save_dir=plan.save_dir if main_rank else None, interrupt_dir=root / plan.task if multi else None,
                   plot_path=plot_path, quiet=args.quiet or not main_rank,
                   log=log if main_rank else lambda *a, **k: None, log_every=args.log_every or LOG_EVERY_DEFAULT)


def _train_plan(fw, args, plans: list[TaskPlan], i: int, root: Path, stop) -> dict:
    """Train ``plans[i]``; on Ctrl-C in a two-task run, record the tasks not started and say how
    to resume the rest.

    Raises:
        Interrupted: ``stop()`` became true (resumable state saved).
    """
    plan, multi = plans[i], len(plans) > 1
    try:
        bundle = train_task(fw, plan.cfg, plan.data, _outputs(args, plan, multi, root), stop, resume=plan.resume)
    except Interrupted as e:
        if not multi:
            raise
        if distributed.current().is_main:
            save_pending(plans, i, root)
        # tasks finished without --save left nothing to resume: name the rest
        rest = "" if all(p.save_dir is not None for p in plans[:i]) else \
            "--task " + ("both " if len(plans) - i > 1 else f"{plan.task} ")
        raise Interrupted(f"{e}".rsplit("; resume with", 1)[0] + f"; resume with {rest}--resume {e.save_dir.parent}",
                          plan.task, e.save_dir) from None
    if plan.pending is not None:
        plan.pending.unlink(missing_ok=True)
    if plan.save_dir is not None and distributed.current().is_main:
        bundle["checkpoint"] = str(plan.save_dir)
    return bundle


def _print_classify_notes(bundle: dict, cfg: RunConfig) -> None:
    """The classifier's contamination note and its held-out figures (rank 0)."""
    if bundle.get("dev_windows_in_lm_train"):
        print(f"[classify] note: {bundle['dev_windows_in_lm_train']} of {bundle['total']} dev windows occur "
              f"verbatim in text8-100k.txt and {bundle['dev_windows_in_classifier_train']} in the "
              "classifier's training examples", flush=True)
    print_heldout(bundle, "initialised from the LM" if cfg.init_from_lm else "direct")


def main_mlx() -> int:
    """Console entry point ``mlx-rnn-train`` (same as ``python scripts/train_mlx.py``)."""
    return main("mlx")


def main_torch() -> int:
    """Console entry point ``mlx-rnn-train-torch`` (same as ``python scripts/train_torch.py``)."""
    return main("torch")


if __name__ == "__main__":  # python -m mlx_rnn.run.cli {mlx,torch} [flags] (used by scripts/seeds.py)
    if len(sys.argv) < 2 or sys.argv[1] not in ("mlx", "torch"):
        print("usage: python -m mlx_rnn.run.cli {mlx,torch} [trainer flags]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
