"""The epochs of one task, once for both frameworks.

:func:`train_task` runs the epochs of one task (:class:`TaskRun`: Ctrl-C and SIGTERM, progress,
``--save-every``, model selection on the validation slice, resume, divergence and the final
bundle), writing where :class:`Outputs` says. One epoch's loop around the batches is
:class:`mlx_rnn.run.epoch.EpochLoop`. This module imports neither framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import math
from pathlib import Path
import time
from typing import Callable

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import distributed
from mlx_rnn.core import corpus as corpus_mod
from mlx_rnn.core.calibration import T_RANGE
from mlx_rnn.core.config import RunConfig
from mlx_rnn.core.curves import plot_history
from mlx_rnn.core.taskdata import check_trainable, data_fingerprint
from mlx_rnn.core.transfer import lm_init_weights
from mlx_rnn.core.vocab import Indexer
from .epoch import EpochResult
from .flags import LOG_EVERY_DEFAULT
from .errors import Diverged, log
from .evaluation import calibrate_on_validation, calibration_note, dev_summary, final_bundle, validation_loss
from .progress import Progress
from . import resume as resume_mod
from .resume import ResumeState


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


def train_task(fw, cfg: RunConfig, data: dict, out: Outputs, stop, resume: ResumeState | None = None) -> dict:
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
    chars_per_step = cfg.batch_size * cfg.seq_len * distributed.current().world_size
    for epoch in range(run.first_epoch, run.last_epoch):
        bar = Progress(run.task, epoch + 1, cfg.epochs, run.trainer.steps_per_epoch, run.start_step,
                       out.quiet, out.log_every, chars_per_step)
        res = run.trainer.train_epoch(epoch, run.start_step, should_stop=stop, progress=bar, prior=run.prior)
        bar.close()
        if res.nonfinite_step is not None:
            raise Diverged(f"[{run.task}] training diverged: non-finite loss at epoch {epoch + 1}, "
                           f"step {res.nonfinite_step + 1}{run.kept()} (try a lower --lr or --clip-norm)")
        if res.interrupted:
            raise resume_mod.save_interrupted(run, epoch, res, getattr(stop, "cause", ""))
        run.start_step, run.prior = 0, (0.0, 0)
        if run.end_epoch(epoch, res):
            break
    return run.finish(time.perf_counter() - t_train)


class TaskRun:
    """One task's training run: its trainer, where it stands (epoch, model selection on the
    validation slice, per-epoch records) and what it writes.

    ``best_epoch`` counts from 0 (-1: none yet); files and bundles record it from 1.
    """

    def __init__(self, fw, cfg: RunConfig, data: dict, out: Outputs, resume: ResumeState | None):
        self.fw, self.cfg, self.data, self.out = fw, cfg, data, out
        self.task = cfg.task
        self.save_dir = Path(out.save_dir) if out.save_dir is not None else None
        self.writer = {"framework": fw.FRAMEWORK, "framework_version": fw.framework_version()}
        self.trainer = fw.Trainer(cfg, data["train"])
        self.first_epoch, self.start_step, self.last_epoch, self.epochs_run = 0, 0, cfg.epochs, 0
        self.prior = (0.0, 0)  # train loss sum and steps of the current epoch before a resume
        self.best_loss, self.best_epoch, self.bad_epochs = math.inf, -1, 0
        self.best_weights: dict | None = None
        self.epoch_times: list[float] = []
        self.history: list[dict] = []  # per-epoch records for --plot (before a resume: from metrics.jsonl)
        if cfg.init_from_lm and resume is None:
            lm_weights, lm_cfg = ckpt.load_checkpoint(cfg.init_from_lm, "lm")
            self.trainer.load_weights({**self.trainer.weights(),
                                       **lm_init_weights(lm_weights, lm_cfg, Indexer(cfg.vocab))})
            out.log(f"[{self.task}] embedding and {cfg.cell.upper()} initialised from the LM {cfg.init_from_lm}")
        if self.trainer.steps_per_epoch < 1:
            check_trainable(cfg, data["train"], "training data")
        if resume is not None:
            resume_mod.restore(self, resume)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the training data for resumable state, when first needed (not before step 1)."""
        return data_fingerprint(self.data["train"])

    def kept(self) -> str:
        """What a diverged run leaves behind, for its error line."""
        if self.save_dir is None:
            return ""
        return f"; the last good checkpoint is in {self.save_dir}" if self.best_epoch >= 0 else "; nothing was saved"

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
        self.out.log(f"[{task}] epoch {epoch + 1:>3}/{cfg.epochs}  train loss {res.mean_loss:.4f}{extra}"
                     f"  {dev_text}  epoch {res.time_s:.2f} s{'  *' if improved else ''}")
        record = dict(epoch=epoch + 1, train_loss=res.mean_loss, val_loss=val_loss, epoch_time_s=res.time_s,
                      elapsed_s=sum(self.epoch_times), steps=res.loss_steps, best=improved, **dev_fig)
        self.history.append(record)
        if self.save_dir is not None:
            resume_mod.save_epoch(self, epoch, improved, record)
        if cfg.patience and self.bad_epochs >= cfg.patience:
            self.out.log(f"[{task}] early stop: no better validation loss for {self.bad_epochs} epochs")
            if self.save_dir is not None:
                resume_mod.save_state(self, self.save_dir, epoch + 1, 0)
            return True
        return False

    def finish(self, train_time: float) -> dict:
        """After the last epoch: the curves (``--plot``), the best weights, calibration (LM), the
        final checkpoint and the result bundle (``train_time``: seconds in the epoch loop)."""
        task, cfg, fw = self.task, self.cfg, self.fw
        if self.out.plot_path is not None and self.history:
            plot_history(self.history, self.out.plot_path, task, f"{task}: {fw.FRAMEWORK} on {cfg.device}")
            self.out.log(f"[{task}] training curves written to {self.out.plot_path}")
        if self.best_weights is not None:
            self.trainer.load_weights(self.best_weights)
        wrapper = self.trainer.wrapper()
        if task == "lm" and cfg.calibrate and self.epochs_run > 0:
            cfg = self.cfg = self._calibrate(wrapper)
        if task == "lm" and self.save_dir is not None and self.epochs_run > 0 and distributed.current().is_main:
            # the checkpoint's config must describe the model reported here (also when a resumed run
            # changes --calibrate without a better epoch)
            ckpt.save_checkpoint(self.save_dir, self.trainer.weights(),
                                 cfg.to_json(self.writer, best_epoch=self.best_epoch + 1))
        bundle = final_bundle(task, wrapper, self.data)
        bundle.update(framework=fw.FRAMEWORK, device=cfg.device, epochs=self.epochs_run,
                      best_epoch=self.best_epoch + 1, epoch_times_s=self.epoch_times, train_time_s=train_time,
                      config=cfg.to_json(self.writer))
        return bundle

    def _calibrate(self, wrapper) -> RunConfig:
        """Fit the LM's temperature on the validation slice, into ``wrapper``; returns the run's
        configuration with it (unchanged with ``--corpus``, where it is not available)."""
        if isinstance(self.data["val"], corpus_mod.CorpusSplit):
            self.out.log(f"[{self.task}] calibration skipped: not available with --corpus")
            return self.cfg
        temperature, before, after = calibrate_on_validation(wrapper, self.data["val"])
        wrapper.calibration_temperature = temperature
        edge = " (at the edge of the searched range)" if temperature in T_RANGE else ""
        self.out.log(f"[{self.task}] calibration temperature {temperature:.4f}{edge} (fitted on the validation slice"
                     f"{calibration_note(self.data['val'])}): val ppl {math.exp(before):.3f} -> {math.exp(after):.3f}")
        return self.cfg.replace(calibration_temperature=temperature)
