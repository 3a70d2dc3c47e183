"""``scripts/prepare_data.py`` / ``mlx-rnn-prepare-data``: build the exercise's data files from
text8 (or any text).

Sources (one of): ``--text FILE`` (any UTF-8 text, cleaned with
:func:`mlx_rnn.core.normalize.normalize_text`); ``--text8 PATH`` (a local ``text8.zip`` or the
raw ``text8`` file); otherwise ``text8.zip`` is downloaded (``--url``) with pooch and kept
beside the output files. Output, into ``--out`` (default: the data directory, see
:func:`mlx_rnn.core.data.resolve_data_dir`): the files listed in :mod:`mlx_rnn.core.prepare`,
which does the work (the trainers' ``--download`` calls it too).

* :mod:`.cli`: the argument parser and :func:`~.cli.main` (exit codes 0 ok, 1 a checksum
  failed, 2 bad input, usage or a failed download, 130 interrupted).

Framework-neutral: imports neither mlx nor torch.
"""

from .cli import main

__all__ = ["main"]
