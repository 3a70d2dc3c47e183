"""Planning a run before anything trains: which tasks, their configurations, data and save
directories, all checked up front (bad input fails before any training starts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
import sys
import time

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import corpus as corpus_mod
from mlx_rnn.core import distributed
from mlx_rnn.core import own_text
from mlx_rnn.core.config import RunConfig
from mlx_rnn.core.data import corpus_alphabet, CLASSIFY_FILES, LM_FILES, MissingData, data_dir_complete, data_dir_given_by, resolve_data_dir
from mlx_rnn.core.memory import check_fits
from mlx_rnn.core.outputs import check_dir_output, check_plot_output
from mlx_rnn.core.savedir import (PENDING, DirLocked, check_save_dirs, claim_run_dir, held_elsewhere, prepare_save_dir,
                                  run_dir_name)
from mlx_rnn.core.taskdata import check_trainable, load_task_data, task_files
from mlx_rnn.core.vocab import Indexer
from .errors import CheckFailed, check_output_json
from .flags import RUNS_DIR, config_from_flags
from .resume import ResumeState, check_epochs_left, load_resume_state, read_pending, resume_config


@dataclass
class TaskPlan:
    """One task of a run, checked and read before anything is trained or written."""

    task: str
    cfg: RunConfig | None = None
    data: dict | None = None
    save_dir: Path | None = None
    resume: ResumeState | None = None
    resume_dir: Path | None = None
    pending: Path | None = None  # resume/pending_config.json of a task not started yet
    read_time_s: float = 0.0
    root: Path | None = None  # the run's --save, --resume or default directory (two tasks: its parent)


def _tasks_from_args(args) -> list[str]:
    """The tasks to run: ``--task``, else lm for ``--train-text``, else what ``--resume DIR``
    holds, else both.

    Raises:
        CheckpointError, DirLocked: ``--resume DIR`` holds nothing to resume (the cause named).
    """
    if args.task:
        return ["classify", "lm"] if args.task == "both" else [args.task]
    if getattr(args, "train_text", None):
        return ["lm"]
    if args.resume:
        root = Path(args.resume)
        if (root / "config.json").exists():
            return [ckpt.read_config(root).task]
        if (root / "resume" / PENDING).exists():
            return [read_pending(root / "resume" / PENDING)["task"]]
        if root.is_dir() and not any(_resumable(root / t) for t in ckpt.TASKS):
            raise _nothing_to_resume(root)  # (a missing directory or a file: _check_flags says so)
    return ["classify", "lm"]


def _resumable(d: Path) -> bool:
    """Whether ``d`` holds a committed checkpoint or the pending configuration of a task."""
    return (d / "config.json").exists() or (d / "resume" / PENDING).exists()


def _nothing_to_resume(root: Path) -> Exception:
    """The error for ``--resume ROOT`` where neither ROOT nor its classify/ and lm/ hold anything
    to resume, naming the cause: no such directory, another run using it before its first save,
    or a first save that never finished."""
    if not root.is_dir():
        return ckpt.CheckpointError(f"{root}: checkpoint directory not found (nothing to resume)")
    for d in (root, root / "classify", root / "lm"):
        if d.is_dir() and held_elsewhere(d):
            return DirLocked(f"--resume {root}: {d} is in use by another run, which has not saved a checkpoint "
                             "yet (it holds the directory's lock); wait for it to finish")
    return ckpt.CheckpointError(f"{root}: nothing to resume: no checkpoint was committed there (no config.json, "
                                "here or in classify/ or lm/): its first save never finished, or it is not a "
                                f"checkpoint directory; start the run again with --save {root}")


def plan_run(framework: str, args) -> list[TaskPlan]:
    """Everything that can fail on bad input, done before any training or writing.

    Resolves and validates every task's configuration, the output paths, the data
    (building it with ``--download`` when missing) and any resumable state.

    Raises:
        ValueError, DataError, CheckpointError, OSError: bad input (exit code 2).
        CheckFailed: a downloaded file failed its checksum (exit code 1).
    """
    tasks = _tasks_from_args(args)
    multi = len(tasks) > 1
    _check_flags(args, tasks)
    root = _run_root(args, tasks)
    plans = [_plan_task(args, task, multi, root) for task in tasks]
    check_save_dirs(plans, args.save, args.resume, multi, distributed.current().is_main)
    for plan in plans:
        if plan.resume_dir is not None and plan.pending is None:
            check_epochs_left(plan.resume_dir, plan.cfg)
    _read_data(plans, args)
    if not (args.save or args.resume) and root is not None and distributed.current().is_main:
        root = claim_run_dir(root)  # every input checked: create it now (-2, -3 ... if it was taken meanwhile)
        for plan in plans:
            if plan.save_dir is not None:
                plan.save_dir = root / plan.task if multi else root
    for plan in plans:
        plan.root = root
        if plan.save_dir is not None and distributed.current().is_main:  # (only rank 0 writes)
            # every input checked: lock the directory for the run, clean up what a crash left
            prepare_save_dir(plan.save_dir, f"--resume {args.resume}" if args.resume and not args.save
                             else f"--save {args.save or root}")
            if "text_cache" in plan.data:  # --train-text: its encoded text moves into the new directory
                plan.data["text_cache"].settle(plan.save_dir)
        if plan.resume_dir is not None and plan.pending is None:
            plan.resume = load_resume_state(plan.resume_dir, plan.task, plan.cfg, plan.data["train"], framework)
    return plans


def _check_flags(args, tasks: list[str]) -> None:
    """The flags that can be checked without any task's configuration: output paths, the LM
    checkpoints a classifier starts from, the directory to resume."""
    _check_text_flags(args, tasks)
    check_output_json(args.output_json)
    check_plot_output(args.plot)
    check_dir_output(args.save)
    check_dir_output(args.resume, "--resume")
    if args.no_save and args.resume:
        raise ValueError("--no-save cannot be combined with --resume: a resumed run writes into the directory "
                         "it resumes (or --save DIR)")
    if (args.zero_shot_lm or args.init_from_lm) and "classify" not in tasks:
        raise ValueError(f"--{'zero-shot-lm' if args.zero_shot_lm else 'init-from-lm'} applies to the classifier: "
                         "use --task classify or both")
    if args.init_from_lm:
        fixed = [f"--{k.replace('_', '-')}" for k in ("embed_dim", "hidden_size", "num_layers", "cell")
                 if getattr(args, k, None) is not None]
        if fixed:
            raise ValueError(f"--init-from-lm takes the sizes from the LM checkpoint; drop {', '.join(fixed)}")
    if args.zero_shot_lm and ckpt.read_config(args.zero_shot_lm).task != "lm":
        raise ckpt.CheckpointError(f"--zero-shot-lm {args.zero_shot_lm}: not a language-model checkpoint")
    if args.resume and not Path(args.resume).is_dir():
        raise ckpt.CheckpointError(f"{args.resume}: checkpoint directory not found (nothing to resume)")


def _check_text_flags(args, tasks: list[str]) -> None:
    """ValueError (one line) for flags that cannot go with ``--train-text``/``--dev-text``, and a
    ``--corpus`` without the LM to train on it."""
    if args.corpus and "lm" not in tasks:
        raise ValueError("--corpus gives the language model's training text; the classifier does not use it "
                         "(use --task lm or --task both)")
    if args.dev_text and not args.train_text:
        raise ValueError("--dev-text FILE goes with --train-text FILE (the text8 LM's dev text is text8-dev.txt)")
    if not args.train_text:
        return
    if tasks != ["lm"]:
        raise ValueError("--train-text trains the language model only: use --task lm (or leave --task out); "
                         "the classifier needs the text8 example files")
    if args.corpus:
        raise ValueError("--train-text and --corpus are two ways to give the LM's training text: use one")
    if args.download:
        raise ValueError("--download builds the text8 data files; --train-text FILE needs none")
    if args.normalize and args.vocab_kind != "text8":
        raise ValueError("--normalize maps the text onto a-z and space: add --vocab text8 (with --train-text the "
                         "alphabet is the text's own symbols by default)")


def _own_text_config(cfg: RunConfig, args, resumed: bool) -> RunConfig:
    """``cfg`` with the ``--train-text``/``--dev-text`` files (``vocab_kind`` corpus unless ``--vocab``
    says otherwise). On ``--resume`` the run's own files are kept; different ones are an error."""
    given = {key: str(Path(getattr(args, key)).resolve()) if getattr(args, key) else None
             for key in ("train_text", "dev_text")}
    if resumed:
        for key, path in given.items():
            had = getattr(cfg, key)
            if path is not None and path != had:
                had = (f"the resumed run's {had}" if had else
                       f"the resumed run, which was trained without --{key.replace('_', '-')}")
                raise ValueError(f"--{key.replace('_', '-')} {getattr(args, key)} differs from {had}; "
                                 "a resumed run keeps its texts")
        return cfg
    if given["train_text"] is None:
        return cfg
    return cfg.replace(**given, vocab_kind="corpus" if args.vocab_kind is None else cfg.vocab_kind)


def _run_root(args, tasks: list[str]) -> Path | None:
    """The directory the run's checkpoints go under: ``--save``, ``--resume``, else (unless
    ``--no-save``, or nothing is trained) a new ``runs/NAME-YYYYmmdd-HHMMSS`` (not created yet;
    its place is checked like a ``--save`` directory's). None: no checkpoint is written."""
    if args.save or args.resume:
        return Path(args.save or args.resume)
    trained = [t for t in tasks if not (t == "classify" and args.zero_shot_lm)]
    if args.no_save or not trained:
        return None
    root = Path(RUNS_DIR) / f"{run_dir_name(tasks, getattr(args, 'train_text', None))}-{datetime.now():%Y%m%d-%H%M%S}"
    try:
        check_dir_output(root, "default checkpoint directory")
    except ValueError as e:
        raise ValueError(f"{e} (choose one with --save DIR, or --no-save)") from None
    return root


def _plan_task(args, task: str, multi: bool, root: Path | None = None) -> TaskPlan:
    """One task's configuration (resumed or from the flags) and where it is saved (``root``: a
    run's default checkpoint directory, see :func:`_run_root`)."""
    plan = TaskPlan(task)
    if args.resume:
        _plan_resume(plan, args, multi)
        plan.cfg = plan.cfg.replace(normalize=bool(args.normalize or plan.cfg.normalize))
    else:
        plan.cfg = config_from_flags(args, task).replace(normalize=bool(args.normalize))
        if task == "classify" and args.init_from_lm:
            # the classifier takes the LM's sizes, so its embedding and recurrent weights fit
            lm_cfg = ckpt.read_config(args.init_from_lm)
            if lm_cfg.task != "lm":
                raise ckpt.CheckpointError(f"--init-from-lm {args.init_from_lm}: is a {lm_cfg.task!r} "
                                           "checkpoint, not an LM")
            plan.cfg = plan.cfg.replace(  # (read_config fills "cell" of older checkpoints)
                embed_dim=lm_cfg.embed_dim, hidden_size=lm_cfg.hidden_size, num_layers=lm_cfg.num_layers,
                cell=lm_cfg.cell, init_from_lm=str(Path(args.init_from_lm).resolve()))
    if task == "lm":
        plan.cfg = _own_text_config(plan.cfg, args, resumed=plan.resume_dir is not None)
    if task == "lm" and args.corpus:
        # --corpus NAME PATH: the LM trains on a whole corpus file, streamed (mlx_rnn/core/corpus.py)
        plan.cfg = plan.cfg.replace(corpus=(args.corpus[0], str(Path(args.corpus[1]).resolve())))
    if args.save:
        plan.save_dir = Path(args.save) / task if multi else Path(args.save)
    elif plan.resume_dir is not None:
        plan.save_dir = plan.resume_dir
    elif root is not None and not (task == "classify" and args.zero_shot_lm):  # (zero-shot: nothing to save)
        plan.save_dir = root / task if multi else root
    return plan


def _plan_resume(plan: TaskPlan, args, multi: bool) -> None:
    """``--resume``: the task's directory, its configuration (or the pending one of a task not
    started yet) with the flags a resumed run may change."""
    root = Path(args.resume)
    rdir = root / plan.task if multi else root
    if not multi and not (root / "config.json").exists() and not (root / "resume" / PENDING).exists() \
            and (root / plan.task).is_dir():
        rdir = root / plan.task  # --task lm --resume ROOT of a two-task run
    if not _resumable(rdir):
        _no_task_to_resume(root, rdir, plan.task)
    pending = rdir / "resume" / PENDING
    plan.pending = pending if not (rdir / "config.json").exists() and pending.is_file() else None
    plan.cfg = resume_config(args, plan.task, rdir, plan.pending)
    plan.resume_dir = rdir


def _no_task_to_resume(root: Path, rdir: Path, task: str) -> None:
    """Raise the error for ``--resume ROOT`` whose task directory ``rdir`` holds nothing to resume,
    naming the cause (see :func:`_nothing_to_resume`), also when ``--task`` was given."""
    if not any(_resumable(d) for d in (root, root / "classify", root / "lm")):
        raise _nothing_to_resume(root)
    if rdir.is_dir() and held_elsewhere(rdir):
        raise DirLocked(f"--resume {root}: {rdir} is in use by another run, which has not saved a checkpoint yet "
                        "(it holds the directory's lock); wait for it to finish")
    if rdir != root and (root / "config.json").exists():
        raise ckpt.CheckpointError(f"--resume {root}: holds one {ckpt.read_config(root).task!r} checkpoint, not "
                                   "a two-task run's classify/ and lm/; resume it without --task both")
    if not rdir.exists():
        raise ckpt.CheckpointError(f"{rdir}: checkpoint directory not found (nothing to resume)")
    raise ckpt.CheckpointError(f"{rdir}: nothing to resume there: no checkpoint was committed (no config.json): "
                               f"its first save never finished; train {task} again with --save {rdir}")


def _read_data(plans: list[TaskPlan], args) -> None:
    """Read (and with ``--download`` first build) every task's data; check it can train and fits
    in memory. Sets ``plan.data`` and ``plan.read_time_s``."""
    data_dir = resolve_data_dir(args.data_dir)
    needed = sorted({f for plan in plans for f in task_files(plan.task)
                     if not (plan.task == "lm" and (plan.cfg.corpus or plan.cfg.train_text))})
    if needed and not data_dir_complete(data_dir, needed):  # (--corpus or --train-text alone need no data directory)
        if not args.download:
            raise MissingData(data_dir, needed, data_dir_given_by(args.data_dir))
        download_data(data_dir, args.quiet)
    for plan in plans:
        t = time.perf_counter()
        cfg = plan.cfg
        if plan.task == "lm" and cfg.corpus:
            plan.data = corpus_mod.lm_data(cfg.corpus, Indexer(cfg.vocab))
            where = Path(cfg.corpus[1])
        elif plan.task == "lm" and cfg.train_text:  # encoded into plan.save_dir/text-cache, memory-mapped
            plan.data, cfg = own_text.lm_data(cfg, plan.resume_dir is not None, cfg.val_fraction, plan.save_dir,
                                              progress=not args.quiet and distributed.current().is_main)
            where = Path(cfg.train_text)
        else:
            if cfg.vocab_kind == "corpus" and plan.resume_dir is None:
                if cfg.normalize:
                    raise ValueError("--vocab corpus keeps every symbol of the text; it cannot be combined with --normalize")
                symbols = corpus_alphabet(data_dir / LM_FILES["train"])  # stored in config.json
                cfg = cfg.replace(vocab=symbols, vocab_size=len(symbols))
            plan.data = load_task_data(plan.task, data_dir, Indexer(cfg.vocab), cfg.val_fraction, cfg.seed,
                                       normalize=cfg.normalize)
            where = data_dir / (CLASSIFY_FILES["train_consonant"] if plan.task == "classify" else LM_FILES["train"])
        try:
            check_trainable(cfg, plan.data["train"], where)
            if not (plan.task == "classify" and args.zero_shot_lm):  # before any model or optimizer state
                check_fits(plan.task, cfg, plan.data.get("resident_bytes", 0), f"the validation blocks of {where.name}")
        except BaseException:
            if "text_cache" in plan.data:  # a run refused before training leaves no encoded text behind
                plan.data["text_cache"].discard()
            raise
        plan.cfg, plan.read_time_s = cfg, time.perf_counter() - t
    for plan in plans:  # after every task's data read: an error in one says it all, without notes
        for note in plan.data.get("notes", []):
            print(f"[{plan.task}] note: {note}", file=sys.stderr, flush=True)


def download_data(data_dir: Path, quiet: bool) -> None:
    """Build the data files in ``data_dir`` (``--download``), as ``scripts/prepare_data.py --out`` does."""
    print(f"{data_dir}: data not found; building it (--download), as scripts/prepare_data.py --out {data_dir} "
          "would", file=sys.stderr, flush=True)
    from mlx_rnn.core.prepare import ChecksumError, prepare

    try:
        prepare(data_dir, progress=not quiet)
    except ChecksumError as e:
        raise CheckFailed(str(e)) from None


def save_pending(plans: list[TaskPlan], after: int, root: Path) -> None:
    """After an interrupt, record the configuration of the tasks not started, so that
    ``--resume ROOT`` can run them later exactly as this run would have."""
    for plan in plans[after + 1:]:
        d = plan.save_dir or root / plan.task
        if not (d / "config.json").exists():
            ckpt.atomic_write_json(d / "resume" / PENDING, plan.cfg.to_json())
