"""Score a saved checkpoint on other files (``scripts/evaluate.py``).

Framework-neutral driver: ``--framework mlx`` loads with :func:`mlx_rnn.load`,
``--framework torch`` with :func:`torch_ref.load`; the same checkpoint works in both.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mlx_rnn.core import backend
from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import own_text
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, check_data_dir, load_examples, read_text, resolve_data_dir
from mlx_rnn.core.metrics import classification_bundle, lm_bundle
from mlx_rnn.run.flags import OneLineParser, prog_name
from mlx_rnn.run.stop import sigterm_interrupts
from mlx_rnn.run.errors import EXIT_OK, check_output_json, print_result, report_exit
from mlx_rnn.core.vocab import Indexer


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog=prog_name("evaluate.py"),
        description=("Evaluate a checkpoint. An LM checkpoint scores a text (--text; default the dev text): "
                     "log probability given the context ' ', average, perplexity, bits per character and the "
                     "exercise's sanity checks; an LM trained with --train-text defaults to its own dev text. A classifier checkpoint scores --consonant/--vowel example files "
                     "(default the dev files). Prints the result JSON keyed by task."),
        epilog="Exit codes: 0 ok, 2 bad input or usage.")
    p.add_argument("--checkpoint", metavar="DIR", help="checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--zero-shot-lm", metavar="DIR",
                   help="instead of --checkpoint: classify --consonant/--vowel with this LM alone (vowel when "
                        "P(a, e, i, o, u next) >= 0.5); classifier bundle")
    p.add_argument("--framework", choices=("mlx", "torch"), default="mlx", help="framework to load it in (default mlx)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "gpu", "mps", "cuda"),
                   help="device: mlx cpu/gpu, torch cpu/mps/cuda, or auto (default cpu, the reproducible choice)")
    p.add_argument("--text", metavar="FILE", help="LM: text file to score")
    p.add_argument("--consonant", metavar="FILE", help="classifier: examples followed by a consonant (label 0)")
    p.add_argument("--vowel", metavar="FILE", help="classifier: examples followed by a vowel (label 1)")
    p.add_argument("--data-dir", help="where the default dev files are (default $MLX_RNN_DATA, else ./data)")
    p.add_argument("--normalize", action="store_true", help="map --text onto a-z and space first")
    p.add_argument("--output-json", metavar="PATH", help="also write the result JSON here")
    return p


def load_wrapper(framework: str, path, device: str = "cpu"):
    """Load a checkpoint's wrapper in ``framework`` on ``device``."""
    device = backend.train_module(framework).select_device(device)
    return backend.load(framework, path), device


def main(argv=None) -> int:
    with sigterm_interrupts():  # SIGTERM: "interrupted by SIGTERM", exit 130, as Ctrl-C
        return _main(argv)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        check_output_json(args.output_json)
        if args.framework == "mlx" and args.device in ("mps", "cuda"):
            raise ValueError(f"--device {args.device} is a PyTorch device; MLX takes cpu, gpu or auto")
        if args.framework == "torch" and args.device == "gpu":
            raise ValueError("--device gpu is an MLX device; PyTorch takes cpu, mps, cuda or auto")
        if bool(args.checkpoint) == bool(args.zero_shot_lm):
            raise ValueError("give one of --checkpoint DIR or --zero-shot-lm DIR")
        _, config = ckpt.load_checkpoint(args.checkpoint or args.zero_shot_lm)  # every check before the framework loads
        if args.zero_shot_lm and config.task != "lm":
            raise ValueError(f"--zero-shot-lm {args.zero_shot_lm}: not a language-model checkpoint")
        task = "classify" if args.zero_shot_lm else config.task
        vocab = Indexer(config.vocab)
        data_dir = resolve_data_dir(args.data_dir)
        if task == "classify":
            if args.text:
                raise ValueError(f"{args.checkpoint} is a classifier checkpoint: give --consonant and --vowel, not --text")
            if bool(args.consonant) != bool(args.vowel):
                raise ValueError("give both --consonant and --vowel")
            if not args.consonant:
                check_data_dir(data_dir, [CLASSIFY_FILES["dev_consonant"], CLASSIFY_FILES["dev_vowel"]])
            cons = Path(args.consonant or data_dir / CLASSIFY_FILES["dev_consonant"])
            vows = Path(args.vowel or data_dir / CLASSIFY_FILES["dev_vowel"])
            examples = load_examples(cons, vows, vocab)
        else:
            if args.consonant or args.vowel:
                raise ValueError(f"{args.checkpoint} is a language-model checkpoint: give --text, not --consonant/--vowel")
            own = None if args.text else own_text.default_dev_text(config, args.checkpoint)  # --train-text
            if own is not None:
                text = own[0]
            else:
                if not args.text:
                    check_data_dir(data_dir, [LM_FILES["dev"]])
                text = read_text(Path(args.text or data_dir / LM_FILES["dev"]), vocab, normalize=args.normalize)
        recorded = ckpt.read_config_json(args.checkpoint or args.zero_shot_lm)  # the result's "config": the file's
        wrapper, device = load_wrapper(args.framework, args.checkpoint or args.zero_shot_lm, args.device)
        if args.zero_shot_lm:
            from mlx_rnn.core.transfer import zero_shot_predict

            bundle = classification_bundle(zero_shot_predict(wrapper, examples.texts), examples.y)
            recorded = {**recorded, "task": "classify", "zero_shot_lm": str(Path(args.zero_shot_lm).resolve())}
        elif task == "classify":
            bundle = classification_bundle(wrapper.predict_batch(examples.texts), examples.y)
        else:
            bundle = lm_bundle(wrapper, vocab, text, " ")
        bundle.update(framework=args.framework, device=device, epochs=None, epoch_times_s=[],
                      train_time_s=None, total_time_s=time.perf_counter() - t0, config=recorded)
        print_result({task: bundle}, args.output_json)
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as e:
        return report_exit(e)


if __name__ == "__main__":
    sys.exit(main())
