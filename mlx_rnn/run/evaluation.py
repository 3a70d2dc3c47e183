"""What the trainer measures: the validation loss and logits, temperature calibration, the dev
summary of each epoch, the final result bundle and the zero-shot classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlx_rnn.core import backend, checkpoint
from mlx_rnn.core import corpus as corpus_mod
from mlx_rnn.core import distributed
from mlx_rnn.core.calibration import fit_temperature, mean_nll
from mlx_rnn.core.metrics import classification_bundle, lm_bundle, perplexity_figures
from mlx_rnn.core.scoring import SCORE_CHUNK, chunk_bounds
from mlx_rnn.core.taskdata import contamination
from mlx_rnn.core.transfer import heldout_note, zero_shot_predict
from mlx_rnn.core.vocab import TEXT8_SYMBOLS


def bce_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of float logits against 0/1 labels."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


#: LM validation positions scored in one batched pass, their logits kept (as calibration needs
#: them). A larger validation slice (a long ``--train-text``) is scored in chunks that carry the
#: state (:func:`chunked_validation_loss`, the same figure in bounded memory), and the temperature
#: is fitted on the first VAL_ONE_PASS positions, shared out over its blocks.
VAL_ONE_PASS = 1 << 17


def validation_loss(task: str, wrapper, val) -> float:
    """The model-selection metric: mean loss on the validation slice (nats; lower is better)."""
    if task == "classify":
        texts, labels = val
        return bce_from_logits(wrapper.logits(texts), labels)
    if isinstance(val, corpus_mod.CorpusSplit):  # --corpus: batched streams over the validation split
        return -corpus_mod.split_figures(wrapper, val)["avg_log_prob"]
    # LM: the validation blocks (split_validation_blocks), each scored from its first character,
    # by the raw model (before any calibration), in one batched pass per block length
    if sum(len(b) - 1 for b in val) > VAL_ONE_PASS:
        return chunked_validation_loss(wrapper, val)
    logits, targets = validation_logits(wrapper, val)
    return mean_nll(logits, targets, 1.0)


def chunked_validation_loss(wrapper, blocks: list[str], chunk: int = SCORE_CHUNK) -> float:
    """Mean loss (nats) of the LM validation blocks, each scored from its first character by the
    raw model, ``chunk`` positions at a time with the state carried (blocks of one length share
    a batch): :func:`validation_logits` and ``mean_nll`` in memory that does not grow with the blocks."""
    score = backend.stream_scorer(wrapper)
    total, count = 0.0, 0
    for length in sorted({len(b) for b in blocks}):
        group = [b for b in blocks if len(b) == length]
        state = None
        for s, e in chunk_bounds(length - 1, chunk):
            x = np.stack([wrapper.vocab.encode(b[s:e]) for b in group])
            y = np.stack([wrapper.vocab.encode(b[s + 1:e + 1]) for b in group])
            sums, state = score(x, y, state)
            total += float(np.sum(sums, dtype=np.float64))
            count += (e - s) * len(group)
    return -total / count


def validation_logits(wrapper, blocks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits float32 (N, V) and targets int (N,) of the LM validation blocks, each block scored
    from its first character (N = sum of len(block) - 1); blocks of one length share a batch."""
    logits, targets = [], []
    for length in sorted({len(b) for b in blocks}):
        group = [b for b in blocks if len(b) == length]
        out = wrapper.logits_batch([b[:-1] for b in group])
        logits.append(out.reshape(-1, out.shape[-1]))
        targets.append(np.concatenate([wrapper.vocab.encode(b[1:]) for b in group]))
    return np.concatenate(logits), np.concatenate(targets)


def calibration_blocks(blocks: list[str]) -> list[str]:
    """The validation blocks the temperature is fitted on: all of them, or for a slice of more
    than VAL_ONE_PASS positions the first ``VAL_ONE_PASS / len(blocks)`` characters of each."""
    if sum(len(b) - 1 for b in blocks) <= VAL_ONE_PASS:
        return blocks
    return [b[:VAL_ONE_PASS // len(blocks) + 1] for b in blocks]


def calibration_note(blocks: list[str]) -> str:
    """For the calibration line: "" when fitted on all the blocks, else which share of them."""
    cut = calibration_blocks(blocks)
    return "" if cut is blocks else f"; its blocks' first {len(cut[0]):,} characters"


def calibrate_on_validation(wrapper, blocks: list[str]) -> tuple[float, float, float]:
    """Fit the LM's calibration temperature on the validation blocks (:mod:`mlx_rnn.core.calibration`;
    a large slice: on :func:`calibration_blocks`).

    Each block is scored from its first character, as in :func:`validation_loss`.

    Returns:
        (temperature, validation loss before, validation loss after), losses in nats per character
        of the blocks fitted on.
    """
    logits, targets = validation_logits(wrapper, calibration_blocks(blocks))
    temperature = fit_temperature(logits, targets)
    return temperature, mean_nll(logits, targets, 1.0), mean_nll(logits, targets, temperature)


def dev_summary(task: str, wrapper, dev) -> tuple[dict, str]:
    """Dev figures after an epoch: (dict for metrics.jsonl, short text for the epoch line)."""
    if task == "classify":
        texts, labels = dev
        b = classification_bundle(wrapper.predict_batch(texts), labels)
        return {"dev_accuracy": b["accuracy"]}, f"dev acc {b['accuracy']:.2f}%"
    if isinstance(dev, corpus_mod.CorpusSplit):  # --corpus: the validation split, evaluated once per epoch
        f = corpus_mod.split_figures(wrapper, dev)
        return ({"valid_perplexity": f["perplexity"], "valid_bits_per_char": f["bits_per_char"]},
                f"valid {f['bits_per_char']:.3f} bpc")
    lp = wrapper.get_log_prob_sequence(dev, " ")
    f = perplexity_figures(lp, len(dev))
    return ({"dev_perplexity": f["perplexity"], "dev_bits_per_char": f["bits_per_char"]},
            f"dev ppl {f['perplexity']:.3f} ({f['bits_per_char']:.3f} bpc)")


def final_bundle(task: str, wrapper, data: dict) -> dict:
    """The task's result bundle on the dev data (docs/design.md, "Result JSON")."""
    if task == "classify":
        texts, labels = data["dev"]
        out = classification_bundle(wrapper.predict_batch(texts), labels)
        out.update(contamination(texts, data["train_texts"], data.get("lm_text")))
        if data.get("heldout") and data["heldout"][0]:
            out["heldout"] = classification_bundle(wrapper.predict_batch(data["heldout"][0]), data["heldout"][1])
        return out
    if "corpus" in data:  # --corpus: figures of the test split, plus valid/test bits per char
        return corpus_mod.lm_corpus_bundle(wrapper, data)
    return lm_bundle(wrapper, wrapper.vocab, data["dev"], " ")


def zero_shot_bundle(fw, lm_path, data: dict, device: str) -> dict:
    """Classify by the LM alone (``--zero-shot-lm``): vowel when P(a, e, i, o, u next) >= 0.5.

    Returns the classification bundle on the dev examples, with ``"heldout"`` on windows
    of text8-dev.txt and the contamination counts; nothing is trained.

    Raises:
        ValueError: an LM whose alphabet lacks some of text8's symbols (one trained on another text).
    """
    lm = backend.load(fw.FRAMEWORK, lm_path, "lm")
    missing = "".join(c for c in TEXT8_SYMBOLS if c not in lm.config.vocab)
    if missing:
        raise ValueError(f"--zero-shot-lm {lm_path}: the LM's alphabet lacks {missing!r} of the classifier's "
                         f"text8 symbols (a-z and space): it was trained on another text")
    texts, labels = data["dev"]
    out = classification_bundle(zero_shot_predict(lm, texts), labels)
    out.update(contamination(texts, data["train_texts"], data.get("lm_text")))
    if data.get("heldout") and data["heldout"][0]:
        out["heldout"] = classification_bundle(zero_shot_predict(lm, data["heldout"][0]), data["heldout"][1])
    out.update(framework=fw.FRAMEWORK, device=device, epochs=0, epoch_times_s=[], train_time_s=None,
               config={**checkpoint.read_config_json(lm_path), "task": "classify", "zero_shot_lm": str(Path(lm_path).resolve())})
    return out


def print_heldout(bundle: dict, how: str) -> None:
    """The labelled dev and held-out accuracies, with the contamination note."""
    if not distributed.current().is_main:
        return
    line = f"[classify] {how}: dev accuracy {bundle['accuracy']:.2f}% (standard dev windows)"
    if "heldout" in bundle:
        h = bundle["heldout"]
        line += f"; held-out accuracy {h['accuracy']:.2f}% ({h['correct']}/{h['total']} windows of text8-dev.txt)"
    print(line, flush=True)
    if "heldout" in bundle and bundle.get("dev_windows_in_lm_train"):
        print(f"[classify] note: {heldout_note(bundle['dev_windows_in_lm_train'], bundle['total'])}", flush=True)
