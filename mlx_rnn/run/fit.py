"""The epoch loop, once for both frameworks.

:func:`train_task` runs the epochs of one task: SIGINT, progress, ``--save-every``, model
selection on the validation slice, resume, divergence and the final bundle.
:class:`EpochLoop` is what one training epoch does around the batches.

``mlx_rnn.train.Trainer`` and ``torch_ref.train.Trainer`` derive from :class:`EpochLoop` and
supply only what differs: the compiled step, how a batch reaches the device, the device-side
loss sum and "first non-finite step" marker, and how to wait for queued work. The timing
contract lives here: the clock starts after the state is evaluated and the device synchronised,
and stops after the last step's work is forced and synchronised again (docs/design.md, Timing
rules). Nothing is read back to the host inside the loop except the non-finite marker, every
``check_every`` steps and at the end of the epoch. This module imports neither framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
import json
import math
from pathlib import Path
import signal
import sys
import time

import numpy as np

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import distributed
from mlx_rnn.core import corpus as corpus_mod
from mlx_rnn.core.calibration import T_RANGE
from mlx_rnn.core.config import cell_of
from mlx_rnn.core.schedule import lr_at
from mlx_rnn.core.taskdata import check_trainable, data_fingerprint
from mlx_rnn.core.transfer import lm_init_weights
from mlx_rnn.core.vocab import Indexer
from .errors import Diverged, Interrupted, _log
from .evaluation import calibrate_on_validation, dev_summary, final_bundle, validation_loss
from .resume import ResumeState, _restore, _truncate_metrics, load_resume_state


@dataclass
class EpochResult:
    """What one training epoch did. ``time_s`` is synchronised wall time in seconds."""

    mean_loss: float
    steps: int
    time_s: float
    nonfinite_step: int | None
    interrupted: bool


class EpochLoop:
    """Epoch control shared by both Trainers.

    A subclass sets ``config``, ``task``, ``dist``, ``model``, ``train_data``, ``global_step``
    and ``carry`` (the LM hidden state carried between chunks), then calls :meth:`_init_loop`,
    and implements:

    - ``_epoch_batches(epoch) -> run(k)``: this rank's batches of one epoch; ``run(k)`` takes
      training step ``k`` (updating ``self.carry`` for the LM) and returns its loss on the device;
    - ``_set_lr(lr)``; ``_zeros(shape)``; ``_markers() -> (loss_sum, bad)`` on the device;
    - ``_accumulate(loss_sum, bad, loss, k) -> (loss_sum, bad)``: add the loss, mark the first
      non-finite step, queue the work (no host read);
    - ``_settle(*arrays)``: force the training state (and ``arrays``) and synchronise.
    """

    def _init_loop(self) -> None:
        cfg = self.config  # global batch = batch_size x ranks; LM offsets may cost one chunk
        self.steps_per_epoch = distributed.steps_per_epoch(self.task, self.train_data, cfg["batch_size"],
                                                           cfg["seq_len"], self.dist.world_size)

    def weights(self) -> dict:
        """The model's parameters as ``{PyTorch name: float32 numpy array}``."""
        return self.model.weights()

    def load_weights(self, weights: dict) -> None:
        self.model.load_numpy(weights)

    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config["epochs"]

    def _zero_carry(self):
        cfg = self.config
        shape = (cfg["num_layers"], cfg["batch_size"], cfg["hidden_size"])
        return tuple(self._zeros(shape) for _ in range(2 if cell_of(cfg) == "lstm" else 1))

    def train_epoch(self, epoch: int, start_step: int = 0, should_stop=lambda: False,
                    progress=None, check_every: int = 50) -> EpochResult:
        """Train one epoch from batch ``start_step`` (non-zero when resuming mid-epoch).

        ``should_stop()`` is polled after each step (a Python flag set by a signal
        handler); ``progress`` (a tqdm bar or None) is advanced once per batch.
        """
        cfg = self.config
        self.model.train()
        run = self._epoch_batches(epoch)
        if self.task == "lm" and (start_step == 0 or self.carry is None):
            self.carry = self._zero_carry()
        loss_sum, bad = self._markers()
        self._settle()
        self.dist.arm()  # watchdog for hung peers (distributed only)
        t0 = time.perf_counter()
        steps, nonfinite, interrupted = 0, None, False
        last = self.steps_per_epoch - 1
        for k in range(start_step, self.steps_per_epoch):
            self._set_lr(lr_at(self.global_step, cfg["lr"], self.total_steps(), cfg["warmup_steps"],
                               cfg["lr_schedule"]))
            loss_sum, bad = self._accumulate(loss_sum, bad, run(k), k)
            steps += 1
            self.global_step += 1
            self.dist.after_step(self.global_step)
            if progress is not None:
                progress.update(1)
            if (steps % check_every == 0 or k == last) and int(bad.item()) >= 0:
                nonfinite = int(bad.item())
                break
            if self.dist.should_stop(should_stop, steps, k == last, check_every):
                interrupted = True
                break
        self._settle(loss_sum)
        self.dist.disarm()
        time_s = time.perf_counter() - t0
        if nonfinite is None and int(bad.item()) >= 0:
            nonfinite = int(bad.item())
        self.epoch_step = start_step + steps
        return EpochResult(float(loss_sum.item()) / max(steps, 1), steps, time_s, nonfinite, interrupted)


class StopFlag:
    """SIGINT sets a flag the batch loop polls; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True
        print("\ninterrupt: finishing this step and saving resumable state (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)
        return False

    def __call__(self) -> bool:
        return self.set


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=True if quiet else None,
                file=sys.stderr, dynamic_ncols=True)


def train_task(fw, task: str, cfg: dict, data: dict, save_dir: Path | None, resume_dir: Path | None,
               quiet: bool, stop, log=_log, *, resume: ResumeState | None = None,
               interrupt_dir: Path | None = None, plot_path: Path | None = None) -> dict:
    """Train one task and return its result bundle (without the total time).

    ``plot_path``: write a PNG of the training curves there (``--plot``).

    Args:
        save_dir: where the checkpoint, ``metrics.jsonl`` and resumable state go (None: nowhere,
            except on Ctrl-C, when they go to ``interrupt_dir``, by default
            ``checkpoints/interrupted-TASK-DATE``).
        resume_dir / resume: continue from this checkpoint directory (``resume``: its state,
            already read with :func:`load_resume_state`).
        stop: polled after every step; when true, resumable state is saved and
            :class:`Interrupted` raised.

    Raises:
        Diverged: a non-finite training or validation loss (nothing is saved for that epoch).
        Interrupted: ``stop()`` became true.
        CheckpointError: unusable resumable state.
    """
    if resume is None and resume_dir is not None:
        resume = load_resume_state(resume_dir, task, cfg, data["train"], fw.FRAMEWORK)
    save_dir = Path(save_dir) if save_dir is not None else None
    trainer = fw.Trainer(cfg, data["train"])
    if cfg.get("init_from_lm") and resume is None:
        lm_weights, lm_cfg = ckpt.load_checkpoint(cfg["init_from_lm"], "lm")
        trainer.load_weights({**trainer.weights(), **lm_init_weights(lm_weights, lm_cfg, Indexer(cfg["vocab"]))})
        log(f"[{task}] embedding and {cfg['cell'].upper()} initialised from the LM {cfg['init_from_lm']}")
    if trainer.steps_per_epoch < 1:
        check_trainable(cfg, data["train"], "training data")
    first_epoch, start_step, best_loss, best_epoch, bad_epochs = 0, 0, math.inf, -1, 0
    epoch_times: list[float] = []
    best_weights = None
    fingerprint = data_fingerprint(data["train"])
    if resume is not None:
        state = resume.state
        _restore(trainer, resume)
        first_epoch, start_step = state["epoch"], state["step"]
        best_loss, best_epoch = state["best_val_loss"], state["best_epoch"]
        bad_epochs, epoch_times = state["bad_epochs"], list(state["epoch_times_s"])
        best_weights = resume.best_weights
        if state.get("data_sha256", fingerprint) != fingerprint:
            log(f"[{task}] warning: the training data differ from those of the interrupted run; "
                "the resumed run will not match an uninterrupted one")
        if save_dir is not None and save_dir.resolve() == resume.dir.resolve():
            _truncate_metrics(save_dir / "metrics.jsonl", first_epoch)
        log(f"[{task}] resuming from {resume.dir}: epoch {first_epoch + 1}, step {start_step}")

    writer = {"framework": fw.FRAMEWORK, "framework_version": fw.framework_version()}

    def save_state(target: Path, epoch: int, step: int) -> None:
        ckpt.save_resume(target, trainer.weights(), trainer.training_state(), {
            "epoch": epoch, "step": step, "global_step": trainer.global_step,
            "data_order_seed": cfg["seed"], "data_sha256": fingerprint,
            "best_val_loss": best_loss if math.isfinite(best_loss) else None, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "epoch_times_s": epoch_times,
            "framework": fw.FRAMEWORK, "framework_version": fw.framework_version(),
        })

    history = []  # per-epoch records for --plot (those before a resume come from metrics.jsonl)
    if resume is not None and save_dir is not None and (save_dir / "metrics.jsonl").is_file():
        history = [json.loads(ln) for ln in (save_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        for rec, elapsed in zip(history, np.cumsum(epoch_times)):
            rec.setdefault("elapsed_s", float(elapsed))
    t_train = time.perf_counter()
    epochs_run = first_epoch
    last_epoch = cfg["epochs"]
    if resume is not None and cfg["patience"] and bad_epochs >= cfg["patience"]:
        log(f"[{task}] already stopped early (no better validation loss for {bad_epochs} epochs)")
        last_epoch = first_epoch
    for epoch in range(first_epoch, last_epoch):
        bar = _progress(trainer.steps_per_epoch - start_step, f"{task} epoch {epoch + 1}/{cfg['epochs']}", quiet)
        res = trainer.train_epoch(epoch, start_step, should_stop=stop, progress=bar)
        bar.close()
        kept = (f"; the last good checkpoint is in {save_dir}" if save_dir is not None and best_epoch >= 0
                else "; nothing was saved" if save_dir is not None else "")
        if res.nonfinite_step is not None:
            raise Diverged(f"[{task}] training diverged: non-finite loss at epoch {epoch + 1}, "
                           f"step {res.nonfinite_step + 1}{kept} (try a lower --lr or --clip-norm)")
        if res.interrupted:
            target = save_dir
            if target is None:
                target = interrupt_dir or Path("checkpoints") / f"interrupted-{task}-{datetime.now():%Y%m%d-%H%M%S}"
            main_rank = distributed.current().is_main  # distributed: only rank 0 writes
            if main_rank:  # the state first: config.json, written last, commits the pair
                save_state(target, epoch, trainer.epoch_step)
            if main_rank and (target != save_dir or best_epoch < 0):
                # the directory needs a checkpoint (config.json + weights) to be resumable
                ckpt.save_checkpoint(target, best_weights if best_weights is not None else trainer.weights(),
                                     dict(cfg, **writer, best_epoch=best_epoch + 1))
            raise Interrupted(f"[{task}] interrupted at epoch {epoch + 1}, step {trainer.epoch_step}; "
                              f"resume with --resume {target}", task, target)
        start_step = 0
        epoch_times.append(res.time_s)
        wrapper = trainer.wrapper()
        # distributed: rank 0's figure on every rank, so model selection and early stopping agree
        val_loss = distributed.current().from_main(validation_loss(task, wrapper, data["val"]))
        if not math.isfinite(val_loss):
            raise Diverged(f"[{task}] training diverged: non-finite validation loss after epoch {epoch + 1}, "
                           f"step {res.steps}{kept} (try a lower --lr or --clip-norm)")
        dev_fig, dev_text = dev_summary(task, wrapper, data["dev"])
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_weights = trainer.weights()
        else:
            bad_epochs += 1
        epochs_run = epoch + 1
        extra = (f"  val ppl {math.exp(val_loss) if val_loss < 709.0 else math.inf:.3f}" if task == "lm"
                 else f"  val loss {val_loss:.4f}")
        log(f"[{task}] epoch {epoch + 1:>3}/{cfg['epochs']}  train loss {res.mean_loss:.4f}{extra}"
            f"  {dev_text}  epoch {res.time_s:.2f} s{'  *' if improved else ''}")
        record = dict(epoch=epoch + 1, train_loss=res.mean_loss, val_loss=val_loss, epoch_time_s=res.time_s,
                      elapsed_s=sum(epoch_times), steps=res.steps, best=improved, **dev_fig)
        history.append(record)
        if save_dir is not None:
            # the first save commits config.json last, after the resumable state, so a directory
            # with a checkpoint can always be resumed (mlx_rnn.core.savedir)
            first = not (save_dir / "config.json").exists()
            if improved:
                ckpt.save_checkpoint(save_dir, best_weights, dict(cfg, **writer, best_epoch=best_epoch + 1),
                                     write_config=not first)
            ckpt.append_jsonl(save_dir / "metrics.jsonl", record)
            if first or (epoch + 1) % cfg["save_every"] == 0 or epoch + 1 == cfg["epochs"]:
                save_state(save_dir, epoch + 1, 0)
            if first and best_weights is not None:
                ckpt.save_checkpoint(save_dir, best_weights, dict(cfg, **writer, best_epoch=best_epoch + 1),
                                     write_weights=False)
        if cfg["patience"] and bad_epochs >= cfg["patience"]:
            log(f"[{task}] early stop: no better validation loss for {bad_epochs} epochs")
            if save_dir is not None:
                save_state(save_dir, epoch + 1, 0)
            break
    train_time = time.perf_counter() - t_train
    if plot_path is not None and history:
        from mlx_rnn.tools.plot import plot_history

        plot_history(history, plot_path, task, f"{task}: {fw.FRAMEWORK} on {cfg['device']}")
        log(f"[{task}] training curves written to {plot_path}")
    if best_weights is not None:
        trainer.load_weights(best_weights)
    wrapper = trainer.wrapper()
    final_cfg = dict(cfg, **writer)
    if task == "lm" and cfg.get("calibrate") and epochs_run > 0:
        if isinstance(data["val"], corpus_mod.CorpusSplit):
            log(f"[{task}] calibration skipped: not available with --corpus")
        else:
            temperature, before, after = calibrate_on_validation(wrapper, data["val"])
            wrapper.calibration_temperature = final_cfg["calibration_temperature"] = temperature
            edge = " (at the edge of the searched range)" if temperature in T_RANGE else ""
            log(f"[{task}] calibration temperature {temperature:.4f}{edge} (fitted on the validation slice): "
                f"val ppl {math.exp(before):.3f} -> {math.exp(after):.3f}")
    if task == "lm" and save_dir is not None and epochs_run > 0 and distributed.current().is_main:
        # the checkpoint's config must describe the model reported here (also when a resumed run
        # changes --calibrate without a better epoch)
        ckpt.save_checkpoint(save_dir, trainer.weights(), dict(final_cfg, best_epoch=best_epoch + 1))
    bundle = final_bundle(task, wrapper, data)
    bundle.update(framework=fw.FRAMEWORK, device=cfg["device"], epochs=epochs_run,
                  best_epoch=best_epoch + 1, epoch_times_s=epoch_times, train_time_s=train_time,
                  config=final_cfg)
    return bundle
