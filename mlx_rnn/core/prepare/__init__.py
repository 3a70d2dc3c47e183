"""Building the exercise's data files from text8 (or any text): what ``scripts/prepare_data.py``
(:mod:`mlx_rnn.tools.prepare`, the command line) and the trainers' ``--download`` run.

Sources (one of):

* any UTF-8 text, cleaned with :func:`mlx_rnn.core.normalize.normalize_text`;
* a local ``text8.zip`` or the raw ``text8`` file;
* otherwise ``text8.zip`` is downloaded (default :data:`.text8.TEXT8_URL`) with pooch: a
  progress bar, retries, and its checksum checked before it is kept beside the output
  files, so a rerun does not download it again.

Output, into the data directory, every file written atomically: ``text8-100k.txt`` (the first
100,000 characters; from text8 byte for byte the standard file),
``train-{consonant,vowel}-examples.txt`` (5,000 20-character windows each),
``dev-{consonant,vowel}-examples.txt`` (500 each), ``text8-dev.txt`` / ``text8-test.txt``
(500 characters, no newline) and ``SHA256SUMS``. How they are drawn: :mod:`.dataset`.

The package:

* :mod:`.text8`: text8's identity (URL, checksums), :func:`~.text8.load_text8`, :func:`~.text8.check_text8`;
* :mod:`.download`: :func:`~.download.download` with pooch (imported when a download starts),
  :func:`~.download.verify_file`;
* :mod:`.dataset`: :func:`~.dataset.build_dataset` (train/validation/test split, windows, texts);
* :mod:`.build`: :func:`~.build.prepare` (the whole job) and :func:`~.build.write_files`.

Framework-neutral: imports neither mlx nor torch.
"""

from .build import prepare
from .text8 import ChecksumError

__all__ = ["ChecksumError", "prepare"]
