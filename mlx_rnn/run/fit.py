"""The epochs of one task, once for both frameworks.

:func:`train_task` runs the epochs of one task (:class:`TaskRun`: Ctrl-C and SIGTERM, progress,
``--save-every``, model selection on the validation slice, resume, divergence and the final
bundle), writing where :class:`Outputs` says. One epoch's loop around the batches is
:class:`mlx_rnn.run.epoch.EpochLoop`. This module imports neither framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
import json
import math
from pathlib import Path
import time
from typing import Callable

import numpy as np

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import distributed
from mlx_rnn.core import corpus as corpus_mod
from mlx_rnn.core.calibration import T_RANGE
from mlx_rnn.core.config import LOG_EVERY_DEFAULT
from mlx_rnn.core.curves import plot_history
from mlx_rnn.core.taskdata import check_trainable, data_fingerprint
from mlx_rnn.core.transfer import lm_init_weights
from mlx_rnn.core.vocab import Indexer
from .epoch import EpochResult
from .errors import Diverged, Interrupted, log
from .evaluation import calibrate_on_validation, calibration_note, dev_summary, final_bundle, validation_loss
from .progress import Progress
from .resume import ResumeState, restore_training_state, truncate_metrics


@dataclass
class Outputs:
    """Where one task's results go, and what it prints.

    ``save_dir``: the checkpoint, ``metrics.jsonl`` and resumable state (None: nowhere, except on
    Ctrl-C, when they go to ``interrupt_dir``, by default ``checkpoints/interrupted-TASK-DATE``).
    ``plot_path``: an image of the training curves (``--plot``). ``quiet``: no progress bars or
    lines; ``log_every``: how often a progress line is printed off a terminal (``--log-every``).
    ``log``: prints one line (distributed: a no-op on every rank but 0).
    """

    save_dir: Path | None = None
    interrupt_dir: Path | None = None
    plot_path: Path | None = None
    quiet: bool = False
    log: Callable[[str], None] = log
    log_every: tuple = LOG_EVERY_DEFAULT


def train_task(fw, cfg: dict, data: dict, out: Outputs, stop, resume: ResumeState | None = None) -> dict:
    """Train the task of ``cfg`` and return its result bundle (without the total time).

    Args:
        fw: a framework's train module (``mlx_rnn.train`` or ``torch_ref.train``).
        data: the task's data (``core.taskdata.load_task_data``: ``train``, ``val``, ``dev``).
        stop: polled after every step; when true, resumable state is saved and
            :class:`Interrupted` raised, naming ``stop.cause`` if it has one
            (:class:`mlx_rnn.run.stop.StopFlag`: the signal).
        resume: continue from this state (read with :func:`mlx_rnn.run.resume.load_resume_state`).

    Raises:
        Diverged: a non-finite training or validation loss (nothing is saved for that epoch).
        Interrupted: ``stop()`` became true.
        CheckpointError: unusable resumable state.
    """
    run = TaskRun(fw, cfg, data, out, resume)
    t_train = time.perf_counter()
    chars_per_step = cfg["batch_size"] * cfg["seq_len"] * distributed.current().world_size
    for epoch in range(run.first_epoch, run.last_epoch):
        bar = Progress(run.task, epoch + 1, cfg["epochs"], run.trainer.steps_per_epoch, run.start_step,
                       out.quiet, out.log_every, chars_per_step)
        res = run.trainer.train_epoch(epoch, run.start_step, should_stop=stop, progress=bar, prior=run.prior)
        bar.close()
        if res.nonfinite_step is not None:
            raise Diverged(f"[{run.task}] training diverged: non-finite loss at epoch {epoch + 1}, "
                           f"step {res.nonfinite_step + 1}{run.kept()} (try a lower --lr or --clip-norm)")
        if res.interrupted:
            raise run.save_interrupted(epoch, res, getattr(stop, "cause", ""))
        run.start_step, run.prior = 0, (0.0, 0)
        if run.end_epoch(epoch, res):
            break
    return run.finish(time.perf_counter() - t_train)


class TaskRun:
    """One task's training run: its trainer, where it stands (epoch, model selection on the
    validation slice, per-epoch records) and what it writes.

    ``best_epoch`` counts from 0 (-1: none yet); files and bundles record it from 1.
    """

    def __init__(self, fw, cfg: dict, data: dict, out: Outputs, resume: ResumeState | None):
        self.fw, self.cfg, self.data, self.out = fw, cfg, data, out
        self.task = cfg["task"]
        self.save_dir = Path(out.save_dir) if out.save_dir is not None else None
        self.writer = {"framework": fw.FRAMEWORK, "framework_version": fw.framework_version()}
        self.trainer = fw.Trainer(cfg, data["train"])
        self.first_epoch, self.start_step, self.last_epoch, self.epochs_run = 0, 0, cfg["epochs"], 0
        self.prior = (0.0, 0)  # train loss sum and steps of the current epoch before a resume
        self.best_loss, self.best_epoch, self.bad_epochs = math.inf, -1, 0
        self.best_weights: dict | None = None
        self.epoch_times: list[float] = []
        self.history: list[dict] = []  # per-epoch records for --plot (before a resume: from metrics.jsonl)
        if cfg.get("init_from_lm") and resume is None:
            lm_weights, lm_cfg = ckpt.load_checkpoint(cfg["init_from_lm"], "lm")
            self.trainer.load_weights({**self.trainer.weights(),
                                       **lm_init_weights(lm_weights, lm_cfg, Indexer(cfg["vocab"]))})
            out.log(f"[{self.task}] embedding and {cfg['cell'].upper()} initialised from the LM {cfg['init_from_lm']}")
        if self.trainer.steps_per_epoch < 1:
            check_trainable(cfg, data["train"], "training data")
        if resume is not None:
            self._restore(resume)

    def _restore(self, resume: ResumeState) -> None:
        """Continue where ``resume`` stopped: trainer state, model selection, epoch records."""
        state, log = resume.state, self.out.log
        restore_training_state(self.trainer, resume)
        self.first_epoch = self.epochs_run = state["epoch"]
        self.start_step = state["step"]
        if "epoch_loss_steps" in state:
            self.prior = (float(state["epoch_loss_sum"]), state["epoch_loss_steps"])
        elif self.start_step:  # written before the partial epoch's loss was kept
            log(f"[{self.task}] note: this resumable state does not hold the train loss of epoch "
                f"{self.first_epoch + 1}'s first {self.start_step} steps; its logged train loss covers the rest")
        self.best_loss, self.best_epoch = state["best_val_loss"], state["best_epoch"]
        self.bad_epochs, self.epoch_times = state["bad_epochs"], list(state["epoch_times_s"])
        self.best_weights = resume.best_weights
        if state.get("data_sha256", self.fingerprint) != self.fingerprint:
            log(f"[{self.task}] warning: the training data differ from those of the interrupted run; "
                "the resumed run will not match an uninterrupted one")
        metrics = self.save_dir / "metrics.jsonl" if self.save_dir is not None else None
        if metrics is not None and self.save_dir.resolve() == resume.dir.resolve():
            truncate_metrics(metrics, self.first_epoch)
        log(f"[{self.task}] resuming from {resume.dir}: epoch {self.first_epoch + 1}, step {self.start_step}")
        if metrics is not None and metrics.is_file():
            self.history = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
            for rec, elapsed in zip(self.history, np.cumsum(self.epoch_times)):
                rec.setdefault("elapsed_s", float(elapsed))
        if self.cfg["patience"] and self.bad_epochs >= self.cfg["patience"]:
            log(f"[{self.task}] already stopped early (no better validation loss for {self.bad_epochs} epochs)")
            self.last_epoch = self.first_epoch
        elif self.first_epoch >= self.last_epoch:
            log(f"[{self.task}] already trained for all {self.last_epoch} epochs: nothing left to train "
                f"(--epochs N with N > {self.last_epoch} trains more)")

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the training data for resumable state, when first needed (not before step 1)."""
        return data_fingerprint(self.data["train"])

    def checkpoint_config(self) -> dict:
        """The ``config.json`` of the model kept so far: the run's settings, the writer, ``best_epoch``."""
        return dict(self.cfg, **self.writer, best_epoch=self.best_epoch + 1)

    def save_state(self, target: Path, epoch: int, step: int, loss: tuple[float, int] = (0.0, 0)) -> None:
        """Write the resumable state under ``target/resume`` (stopped before ``step`` of ``epoch``;
        ``loss``: the train loss sum and step count of that epoch so far)."""
        fw = self.fw
        ckpt.save_resume(target, self.trainer.weights(), self.trainer.training_state(), {
            "epoch": epoch, "step": step, "global_step": self.trainer.global_step,
            "epoch_loss_sum": loss[0], "epoch_loss_steps": loss[1],
            "data_order_seed": self.cfg["seed"], "data_sha256": self.fingerprint,
            "best_val_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "epoch_times_s": self.epoch_times,
            "framework": fw.FRAMEWORK, "framework_version": fw.framework_version(),
        })

    def kept(self) -> str:
        """What a diverged run leaves behind, for its error line."""
        if self.save_dir is None:
            return ""
        return f"; the last good checkpoint is in {self.save_dir}" if self.best_epoch >= 0 else "; nothing was saved"

    def save_interrupted(self, epoch: int, res: EpochResult, cause: str = "") -> Interrupted:
        """Save resumable state after Ctrl-C or SIGTERM (``cause``) in ``epoch``, with the train
        loss of its steps so far (``res``); returns the :class:`Interrupted` to raise."""
        target = self.save_dir
        if target is None:
            target = self.out.interrupt_dir or \
                Path("checkpoints") / f"interrupted-{self.task}-{datetime.now():%Y%m%d-%H%M%S}"
        step = self.trainer.epoch_step
        if distributed.current().is_main:  # distributed: only rank 0 writes
            self.save_state(target, epoch, step, (res.loss_sum, res.loss_steps))  # (config.json last commits the pair)
            if target != self.save_dir or self.best_epoch < 0:
                # the directory needs a checkpoint (config.json + weights) to be resumable
                weights = self.best_weights if self.best_weights is not None else self.trainer.weights()
                ckpt.save_checkpoint(target, weights, self.checkpoint_config())
        by = f" by {cause}" if cause else ""
        return Interrupted(f"[{self.task}] interrupted{by} at epoch {epoch + 1}, step {step}; "
                           f"resume with --resume {target}", self.task, target)

    def end_epoch(self, epoch: int, res: EpochResult) -> bool:
        """Validate after ``epoch``, keep the better model, log, record and save; True: stop early.

        Raises:
            Diverged: a non-finite validation loss.
        """
        task, cfg = self.task, self.cfg
        self.epoch_times.append(res.time_s)
        wrapper = self.trainer.wrapper()
        # distributed: rank 0's figure on every rank, so model selection and early stopping agree
        val_loss = distributed.current().from_main(validation_loss(task, wrapper, self.data["val"]))
        if not math.isfinite(val_loss):
            raise Diverged(f"[{task}] training diverged: non-finite validation loss after epoch {epoch + 1}, "
                           f"step {res.steps}{self.kept()} (try a lower --lr or --clip-norm)")
        dev_fig, dev_text = dev_summary(task, wrapper, self.data["dev"])
        improved = val_loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_weights = self.trainer.weights()
        else:
            self.bad_epochs += 1
        self.epochs_run = epoch + 1
        extra = (f"  val ppl {math.exp(val_loss) if val_loss < 709.0 else math.inf:.3f}" if task == "lm"
                 else f"  val loss {val_loss:.4f}")
        self.out.log(f"[{task}] epoch {epoch + 1:>3}/{cfg['epochs']}  train loss {res.mean_loss:.4f}{extra}"
                     f"  {dev_text}  epoch {res.time_s:.2f} s{'  *' if improved else ''}")
        record = dict(epoch=epoch + 1, train_loss=res.mean_loss, val_loss=val_loss, epoch_time_s=res.time_s,
                      elapsed_s=sum(self.epoch_times), steps=res.loss_steps, best=improved, **dev_fig)
        self.history.append(record)
        if self.save_dir is not None:
            self._save_epoch(epoch, improved, record)
        if cfg["patience"] and self.bad_epochs >= cfg["patience"]:
            self.out.log(f"[{task}] early stop: no better validation loss for {self.bad_epochs} epochs")
            if self.save_dir is not None:
                self.save_state(self.save_dir, epoch + 1, 0)
            return True
        return False

    def _save_epoch(self, epoch: int, improved: bool, record: dict) -> None:
        """The checkpoint (when better), the metrics line and, every ``save_every`` epochs, the state.

        The first save commits ``config.json`` last, after the resumable state, so a directory
        with a checkpoint can always be resumed (mlx_rnn.core.savedir).
        """
        save_dir = self.save_dir
        first = not (save_dir / "config.json").exists()
        if improved:
            ckpt.save_checkpoint(save_dir, self.best_weights, self.checkpoint_config(), write_config=not first)
        ckpt.append_jsonl(save_dir / "metrics.jsonl", record)
        if first or (epoch + 1) % self.cfg["save_every"] == 0 or epoch + 1 == self.cfg["epochs"]:
            self.save_state(save_dir, epoch + 1, 0)
        if first and self.best_weights is not None:
            ckpt.save_checkpoint(save_dir, self.best_weights, self.checkpoint_config(), write_weights=False)

    def finish(self, train_time: float) -> dict:
        """After the last epoch: the curves (``--plot``), the best weights, calibration (LM), the
        final checkpoint and the result bundle (``train_time``: seconds in the epoch loop)."""
        task, cfg, fw = self.task, self.cfg, self.fw
        if self.out.plot_path is not None and self.history:
            plot_history(self.history, self.out.plot_path, task, f"{task}: {fw.FRAMEWORK} on {cfg['device']}")
            self.out.log(f"[{task}] training curves written to {self.out.plot_path}")
        if self.best_weights is not None:
            self.trainer.load_weights(self.best_weights)
        wrapper = self.trainer.wrapper()
        final_cfg = dict(cfg, **self.writer)
        if task == "lm" and cfg.get("calibrate") and self.epochs_run > 0:
            self._calibrate(wrapper, final_cfg)
        if task == "lm" and self.save_dir is not None and self.epochs_run > 0 and distributed.current().is_main:
            # the checkpoint's config must describe the model reported here (also when a resumed run
            # changes --calibrate without a better epoch)
            ckpt.save_checkpoint(self.save_dir, self.trainer.weights(),
                                 dict(final_cfg, best_epoch=self.best_epoch + 1))
        bundle = final_bundle(task, wrapper, self.data)
        bundle.update(framework=fw.FRAMEWORK, device=cfg["device"], epochs=self.epochs_run,
                      best_epoch=self.best_epoch + 1, epoch_times_s=self.epoch_times, train_time_s=train_time,
                      config=final_cfg)
        return bundle

    def _calibrate(self, wrapper, final_cfg: dict) -> None:
        """Fit the LM's temperature on the validation slice; into ``wrapper`` and ``final_cfg``."""
        if isinstance(self.data["val"], corpus_mod.CorpusSplit):
            self.out.log(f"[{self.task}] calibration skipped: not available with --corpus")
            return
        temperature, before, after = calibrate_on_validation(wrapper, self.data["val"])
        wrapper.calibration_temperature = final_cfg["calibration_temperature"] = temperature
        edge = " (at the edge of the searched range)" if temperature in T_RANGE else ""
        self.out.log(f"[{self.task}] calibration temperature {temperature:.4f}{edge} (fitted on the validation slice"
                     f"{calibration_note(self.data['val'])}): val ppl {math.exp(before):.3f} -> {math.exp(after):.3f}")
