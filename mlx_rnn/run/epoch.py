"""What one training epoch does around the batches, once for both frameworks (:class:`EpochLoop`).

``mlx_rnn.train.Trainer`` and ``torch_ref.train.Trainer`` derive from :class:`EpochLoop` and
supply only what differs: the compiled step, how a batch reaches the device, the device-side
loss sum and "first non-finite step" marker, and how to wait for queued work. The timing
contract lives here: the clock starts after the state is evaluated and the device synchronised,
and stops after the last step's work is forced and synchronised again (docs/design.md, Timing
rules). Nothing is read back to the host inside the loop except the non-finite marker, every
``check_every`` steps and at the end of the epoch, and the loss sum when a progress line is due
(:mod:`mlx_rnn.run.progress`: every ``--log-every``). This module imports neither framework.
"""

from __future__ import annotations

from dataclasses import dataclass
import time

from mlx_rnn.core import batching
from mlx_rnn.core.schedule import lr_at


@dataclass
class EpochResult:
    """What one training epoch did. ``time_s`` is synchronised wall time in seconds; ``steps``
    the steps this call ran; ``mean_loss`` = ``loss_sum / loss_steps``, the mean train loss over
    the epoch's steps so far (a resumed epoch: those before the interruption too)."""

    mean_loss: float
    steps: int
    time_s: float
    nonfinite_step: int | None
    interrupted: bool
    loss_sum: float = 0.0
    loss_steps: int = 0


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
        self.steps_per_epoch = batching.steps_per_epoch(cfg, self.train_data, self.dist.world_size)

    def weights(self) -> dict:
        """The model's parameters as ``{PyTorch name: float32 numpy array}``."""
        return self.model.weights()

    def load_weights(self, weights: dict) -> None:
        self.model.load_numpy(weights)

    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    def _zero_carry(self):
        cfg = self.config
        shape = (cfg.num_layers, cfg.batch_size, cfg.hidden_size)
        return tuple(self._zeros(shape) for _ in range(2 if cfg.cell == "lstm" else 1))

    def train_epoch(self, epoch: int, start_step: int = 0, should_stop=lambda: False,
                    progress=None, check_every: int = 50, prior: tuple[float, int] = (0.0, 0)) -> EpochResult:
        """Train one epoch from batch ``start_step`` (non-zero when resuming mid-epoch).

        ``should_stop()`` is polled after each step (a Python flag set by a signal
        handler); ``progress`` (a :class:`mlx_rnn.run.progress.Progress` or None) is advanced
        once per batch, and the loss sum read back only when it has a line due. ``prior``: the
        train loss sum and step count of this epoch before ``start_step`` (a resumed epoch), so
        the epoch's mean covers all its steps.
        """
        cfg = self.config
        self.model.train()
        run = self._epoch_batches(epoch)
        if self.task == "lm" and (start_step == 0 or self.carry is None):
            self.carry = self._zero_carry()
        loss_sum, bad = self._markers()
        if prior[1]:  # the same float32 sum an uninterrupted epoch would carry on from
            loss_sum = loss_sum + prior[0]
        self._settle()
        self.dist.arm()  # watchdog for hung peers (distributed only)
        t0 = time.perf_counter()
        steps, nonfinite, interrupted = 0, None, False
        last = self.steps_per_epoch - 1
        for k in range(start_step, self.steps_per_epoch):
            self._set_lr(lr_at(self.global_step, cfg.lr, self.total_steps(), cfg.warmup_steps,
                               cfg.lr_schedule))
            loss_sum, bad = self._accumulate(loss_sum, bad, run(k), k)
            steps += 1
            self.global_step += 1
            self.dist.after_step(self.global_step)
            if progress is not None:
                progress.update()
                if progress.due():  # every --log-every steps or seconds: the one read of the loss
                    progress.report(float(loss_sum.item()), prior[1] + steps)
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
        total = float(loss_sum.item())
        return EpochResult(total / max(prior[1] + steps, 1), steps, time_s, nonfinite, interrupted,
                           total, prior[1] + steps)
