"""The run configuration: per-task defaults, the one typed configuration of a run
(:class:`RunConfig`, with the network's part :class:`ModelConfig`) and the one check of every
setting (:func:`validate_config`).

Framework-neutral and standard library only. A run's configuration is built once: from the
trainers' flags in :mod:`mlx_rnn.run.flags` (``config_from_flags``), from a checkpoint's
``config.json`` (:meth:`RunConfig.from_json`, after :func:`mlx_rnn.core.checkpoint.migrate_config`)
or, for the benchmark, the sweep, compare and tests, with :func:`make_config`. It is frozen:
a later step that learns something (the corpus alphabet, the device, a fitted temperature)
makes a new one with :meth:`RunConfig.replace`. :meth:`RunConfig.to_json` writes the keys in
the order the trainers have always written them, so ``config.json`` stays byte-compatible.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
import math

from .vocab import TEXT8_SYMBOLS

TASK_DEFAULTS = {
    "classify": dict(embed_dim=32, hidden_size=128, num_layers=1, dropout=0.2, lr=3e-3,
                     weight_decay=0.1, clip_norm=1.0, batch_size=64, seq_len=20, epochs=20,
                     warmup_steps=0, lr_schedule="cosine", prefix_weight=1.0, weight_drop=0.0,
                     input_dropout=None),
    "lm": dict(embed_dim=512, hidden_size=512, num_layers=2, dropout=0.5, lr=4.5e-3,
               weight_decay=0.1, clip_norm=1.0, batch_size=32, seq_len=25, epochs=20,
               warmup_steps=50, lr_schedule="cosine", weight_drop=0.0, input_dropout=None, calibrate=True),
}
COMMON_DEFAULTS = dict(seed=0, val_fraction=0.05, patience=0, save_every=1, cell="lstm", vocab_kind="text8")
#: What the trainers add to a task's settings, in config.json's order: the data a run was trained
#: on, then where it ran (present only when set; ``dev_text`` and ``dev_tail_chars`` whenever ``train_text`` is).
RUN_RECORD_KEYS = ("task", "vocab", "vocab_size", "normalize", "init_from_lm", "train_text", "dev_text", "corpus",
                   "dev_tail_chars", "device", "precision")


@dataclass(frozen=True)
class ModelConfig:
    """What the network constructors of both frameworks take (``RNNClassifierModel``, ``LMRNNModel``).

    ``input_dropout`` None: the embedding output is dropped at ``dropout`` too (docs/design.md).
    """

    vocab_size: int
    embed_dim: int
    hidden_size: int
    num_layers: int = 1
    dropout: float = 0.0
    cell: str = "lstm"
    weight_drop: float = 0.0
    input_dropout: float | None = None

    @property
    def embedding_dropout(self) -> float:
        """The dropout probability on the embedding output."""
        return self.dropout if self.input_dropout is None else self.input_dropout


@dataclass(frozen=True)
class RunConfig:
    """One task's run: the network, the optimizer and its schedule, the data and where it ran.

    Units: ``lr`` per step, ``seq_len`` and ``batch_size`` in characters and sequences, ``epochs``,
    ``warmup_steps``, ``patience`` and ``save_every`` counts. ``prefix_weight`` is the classifier's and
    ``calibrate`` the LM's (None for the other task). ``vocab`` holds the symbols in index order.
    Built with :func:`make_config`, :meth:`from_json` or ``mlx_rnn.run.flags.config_from_flags``.
    """

    task: str
    vocab: str
    vocab_size: int
    embed_dim: int
    hidden_size: int
    num_layers: int
    dropout: float
    lr: float
    weight_decay: float
    clip_norm: float
    batch_size: int
    seq_len: int
    epochs: int
    warmup_steps: int
    lr_schedule: str
    weight_drop: float
    input_dropout: float | None
    seed: int
    val_fraction: float
    patience: int
    save_every: int
    cell: str
    vocab_kind: str
    prefix_weight: float | None = None
    calibrate: bool | None = None
    normalize: bool = False
    init_from_lm: str | None = None  # classify: the LM checkpoint it started from (absolute path)
    train_text: str | None = None  # LM on one's own text (absolute paths; dev_text None: the held-out tail)
    dev_text: str | None = None
    corpus: tuple | None = None  # (name, absolute path) of --corpus
    dev_tail_chars: int | None = None
    device: str | None = None
    precision: str | None = None
    calibration_temperature: float | None = None  # the LM's fitted temperature, once fitted

    @property
    def model(self) -> ModelConfig:
        """The network's part, as both frameworks' constructors take it."""
        return ModelConfig(self.vocab_size, self.embed_dim, self.hidden_size, self.num_layers, self.dropout,
                           self.cell, self.weight_drop, self.input_dropout)

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes`` (checked like a run's flags).

        Raises:
            ValueError: a changed setting that cannot work.
        """
        new = replace(self, **changes)
        changed = {k: v for k, v in changes.items() if v is not None}  # (None: a setting unset)
        if {"vocab", "vocab_size"} & set(changes):  # the alphabet and its size must agree
            changed.update(vocab=new.vocab, vocab_size=new.vocab_size)
        validate_config(changed)
        return new

    @staticmethod
    def flag_settings(task: str) -> tuple:
        """The settings of ``task`` a flag may give (in config.json's order)."""
        return (*TASK_DEFAULTS[task], *COMMON_DEFAULTS)

    def to_json(self, writer: dict | None = None, best_epoch: int | None = None) -> dict:
        """The settings as ``config.json`` and the result JSON's ``config`` hold them, in the order
        the trainers have always written them: the task's settings, :data:`RUN_RECORD_KEYS` that are
        set, the ``writer`` (``framework``, ``framework_version``), the fitted temperature, then
        ``best_epoch`` (counted from 1) when given."""
        out = {key: getattr(self, key) for key in self.flag_settings(self.task)}
        for key in RUN_RECORD_KEYS:
            val = getattr(self, key)
            if val is not None or (key in ("dev_text", "dev_tail_chars") and self.train_text is not None):
                out[key] = list(val) if key == "corpus" else val
        out.update(writer or {})
        if self.calibration_temperature is not None:
            out["calibration_temperature"] = self.calibration_temperature
        if best_epoch is not None:
            out["best_epoch"] = best_epoch
        return out

    @classmethod
    def from_json(cls, settings: dict) -> "RunConfig":
        """The configuration recorded in a (migrated, validated) ``config.json`` or pending
        configuration; the writer's keys (framework, version, best epoch, format) and keys this
        version does not know are left out, and so is the other task's key. A training setting the file lacks (a checkpoint
        written by hand with only the model's keys) takes its default: :func:`mlx_rnn.run.resume.resume_config`
        refuses to resume such a file."""
        known = {f.name for f in fields(cls)}
        kept = {**TASK_DEFAULTS[settings["task"]], **COMMON_DEFAULTS,
                **{k: v for k, v in settings.items() if k in known}}
        kept.pop("prefix_weight" if settings["task"] == "lm" else "calibrate", None)
        if kept.get("corpus") is not None:
            kept["corpus"] = tuple(kept["corpus"])
        kept.setdefault("normalize", False)
        return cls(**kept)


def make_config(task: str, **overrides) -> RunConfig:
    """A task's configuration: its defaults (:data:`TASK_DEFAULTS`, :data:`COMMON_DEFAULTS`, the
    text8 alphabet) with ``overrides`` on top, for the trainers, the benchmark, the sweep, compare
    and tests alike.

    Raises:
        ValueError: an unknown task or setting, or a setting that cannot work (naming its flag).
    """
    if task not in TASK_DEFAULTS:
        raise ValueError(f"unknown task {task!r} (classify or lm)")
    settings = dict(TASK_DEFAULTS[task], **COMMON_DEFAULTS, task=task, vocab=TEXT8_SYMBOLS,
                    vocab_size=len(TEXT8_SYMBOLS))
    unknown = sorted(set(overrides) - {f.name for f in fields(RunConfig)})
    if unknown:
        raise ValueError(f"unknown settings {', '.join(unknown)}")
    settings.update(overrides)
    if "vocab" in overrides and "vocab_size" not in overrides:
        settings["vocab_size"] = len(settings["vocab"])
    validate_config(settings)
    return RunConfig(**settings)


#: The calibration temperatures a checkpoint may hold (the fit itself stays in [0.25, 4]).
CALIBRATION_TEMPERATURE_BOUNDS = (0.01, 100.0)
_T_LO, _T_HI = CALIBRATION_TEMPERATURE_BOUNDS

#: More epochs than anyone trains for (a typo such as 2000000000 is refused, not run for years).
MAX_EPOCHS = 100_000
MAX_SEED = 2**64 - 1  # the widest seed both frameworks take (mx.random.seed: uint64)

#: What each numeric setting must be: key -> (integer?, test, the rule in a flag's words, the rule in
#: config.json's words). A flag's type is already checked by argparse, so its words give the range;
#: a config.json value may be any JSON value, so those words give the type as well.
SETTING_RULES = {
    **{key: (True, lambda v: v >= 1, "must be at least 1", "must be a positive integer")
       for key in ("vocab_size", "embed_dim", "hidden_size", "num_layers", "batch_size", "seq_len", "save_every")},
    "epochs": (True, lambda v: 1 <= v <= MAX_EPOCHS, f"must be between 1 and {MAX_EPOCHS:,}",
               f"must be an integer between 1 and {MAX_EPOCHS:,}"),
    "dropout": (False, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", "must be a number in [0, 1)"),
    "input_dropout": (False, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", "must be a number in [0, 1)"),
    "weight_drop": (False, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", "must be a number in [0, 1)"),
    "prefix_weight": (False, lambda v: v >= 0, "must not be negative", "must be a non-negative number"),
    "lr": (False, lambda v: v > 0, "must be positive", "must be a positive number"),
    "val_fraction": (False, lambda v: 0.0 < v < 0.5, "must be in (0, 0.5)", "must be a number in (0, 0.5)"),
    "weight_decay": (False, lambda v: v >= 0, "must not be negative", "must be a non-negative number"),
    "clip_norm": (False, lambda v: v >= 0, "must not be negative", "must be a non-negative number"),
    **{key: (True, lambda v: v >= 0, "must not be negative", "must be a non-negative integer")
       for key in ("warmup_steps", "patience")},
    "seed": (True, lambda v: 0 <= v <= MAX_SEED, f"must be between 0 and 2^64 - 1 ({MAX_SEED})",
             "must be an integer between 0 and 2^64 - 1"),
    "calibration_temperature": (False, lambda v: _T_LO <= v <= _T_HI, f"must be in [{_T_LO:g}, {_T_HI:g}]",
                                f"must be a number in [{_T_LO:g}, {_T_HI:g}]"),
}
#: Settings that take one of a few values.
SETTING_CHOICES = {"cell": ("lstm", "gru"), "lr_schedule": ("constant", "cosine"), "vocab_kind": ("text8", "corpus")}


def is_integer(x) -> bool:
    """An int that is not a bool (JSON true/false are bools)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_finite_number(x) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_config(cfg: dict, where=None) -> None:
    """Raise ValueError (one line) for a setting of ``cfg`` that cannot work.

    The one check of every setting, for a run's flags and for a checkpoint's ``config.json``
    alike. Only the settings present are checked (a run's configuration has all of them; a
    checkpoint's model keys are required by ``checkpoint.read_config``); ``input_dropout`` may
    be None (it follows ``dropout``).

    Args:
        where: None for a run's configuration: the message names the flag (``--dropout must be
            in [0, 1) (got 1.5)``); else the file the settings were read from: the message names
            the file and the key (``PATH: 'dropout' must be a number in [0, 1) (got 1.5)``).
    """
    def name(key):
        return "--" + key.replace("_", "-") if where is None else f"{where}: {key!r}"

    for key, (integer, ok, flag_rule, file_rule) in SETTING_RULES.items():
        val = cfg.get(key)
        if key not in cfg or (key == "input_dropout" and val is None):
            continue
        typed = is_integer(val) if integer else is_finite_number(val)
        if where is None and not typed:
            raise ValueError(f"{name(key)} must be {'an integer' if integer else 'a finite number'} (got {val!r:.60})")
        if not typed or not ok(val):
            raise ValueError(f"{name(key)} {flag_rule if where is None else file_rule} (got {val!r:.60})")
    for key, choices in SETTING_CHOICES.items():
        if key in cfg and cfg[key] not in choices:
            raise ValueError(f"{name(key)} must be {' or '.join(choices)} (got {cfg[key]!r:.60})")
    if "calibrate" in cfg and not isinstance(cfg["calibrate"], bool):
        raise ValueError(f"{name('calibrate')} must be true or false (got {cfg['calibrate']!r:.60})")
    prefix = "" if where is None else f"{where}: "
    if "vocab" in cfg:
        vocab = cfg["vocab"]
        if not isinstance(vocab, str) or not vocab or len(set(vocab)) != len(vocab):
            raise ValueError(f"{name('vocab')} must be a non-empty string of distinct symbols (got {vocab!r:.60})")
        if "vocab_size" in cfg and len(vocab) != cfg["vocab_size"]:
            raise ValueError(f"{prefix}vocab has {len(vocab)} symbols but vocab_size is {cfg['vocab_size']}")
