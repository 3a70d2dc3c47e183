"""Map any text onto the text8 alphabet (a-z and space), the way text8 was cleaned.

text8 is the output of Matt Mahoney's ``wikifil.pl`` (Appendix A of
http://mattmahoney.net/dc/textdata.html) on English Wikipedia. Its final step,
which this module reproduces, is::

    $_=" $_ ";            # pad with spaces
    tr/A-Z/a-z/;          # lowercase (ASCII only)
    s/0/ zero /g; ...     # each digit becomes its English word, one digit at a time
    s/9/ nine /g;
    tr/a-z/ /cs;          # everything that is not a-z becomes a space; runs squeezed
    chop;                 # drop the final space

(The earlier wikifil steps strip MediaWiki/XML markup; they do not apply to
plain text and are not reproduced.)

Choices, where wikifil's byte-oriented Perl leaves room:

* **Letters** are ASCII ``A-Z``/``a-z`` only. Every other character, accented
  letters included (``é``, ``ß``, ``Ж``), becomes a space, as in wikifil (whose
  ``tr`` sees UTF-8 bytes, all outside ``a-z``). So ``"café"`` -> ``"caf "``.
  ``fold_accents=True`` instead decomposes letters first (``é`` -> ``e``,
  ``ß`` -> ``ss``, ``æ`` -> ``ae``), which keeps words whole in non-English text;
  it is off by default because text8 itself does not do it.
* **Digits** are ASCII ``0-9``, spelled one digit at a time: ``"42"`` ->
  ``" four two "`` (then squeezed). Other Unicode digits become spaces.
* **Edges**: every maximal run of non-letters becomes exactly one space, at the
  ends of the text too, and nothing is added or removed beyond that: ``"Hi!"``
  -> ``"hi "``, ``"  x  "`` -> ``" x "``, ``"x"`` -> ``"x"``. (wikifil always
  starts a chunk with one space and chops the trailing one; callers that want no
  edge spaces can ``.strip()``.)

Framework-neutral: imports neither mlx nor torch.
"""

from __future__ import annotations

import re
import unicodedata

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Byte table: a-z kept, A-Z lowercased, 0-9 kept (spelled out afterwards), all else a space.
_BYTE_TABLE = bytearray(b" " * 256)
for _c in range(ord("a"), ord("z") + 1):
    _BYTE_TABLE[_c] = _c
    _BYTE_TABLE[_c - 32] = _c
for _c in range(ord("0"), ord("9") + 1):
    _BYTE_TABLE[_c] = _c
_BYTE_TABLE = bytes(_BYTE_TABLE)
_DIGIT_REPLACEMENTS = tuple((str(d).encode(), f" {w} ".encode()) for d, w in enumerate(DIGIT_WORDS))
_SPACE_RUNS = re.compile(rb" {2,}")

# Letters that Unicode does not decompose but that have a usual ASCII spelling.
_FOLD_SPECIAL = str.maketrans({
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
    "ı": "i", "ĸ": "k", "ŋ": "ng", "Ŋ": "NG",
})
# Combining marks left over after NFKD decomposition (the combining-diacritics blocks).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def strip_accents(text: str) -> str:
    """Spell accented Latin letters without their accents (``"Dvořák"`` -> ``"Dvorak"``).

    NFKD-decomposes the text, drops combining marks, and spells a few letters that
    have no decomposition (``ß`` -> ``ss``, ``æ`` -> ``ae``, ``ø`` -> ``o``, ...).
    Compatibility characters decompose too (``"²"`` -> ``"2"``, ``"ﬁ"`` -> ``"fi"``).
    Characters of other scripts are left as they are.
    """
    text = text.translate(_FOLD_SPECIAL)
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text))


def normalize_text(text: str, *, fold_accents: bool = False) -> str:
    """Clean ``text`` to the text8 alphabet (lowercase a-z and single spaces), like wikifil.pl.

    Args:
        text: any Unicode text (newlines, punctuation, digits, other scripts).
        fold_accents: first spell accented letters without accents (see
            :func:`strip_accents`); off by default, as text8 maps them to spaces.

    Returns:
        A string over ``"abcdefghijklmnopqrstuvwxyz "`` with no two spaces in a row.
        ASCII letters are lowercased, each ASCII digit becomes its word
        (``"42"`` -> ``"four two"``), and every other character becomes a space.
        A run of non-letters at either end becomes one space (kept, not stripped).
        Empty input gives ``""``. Idempotent: ``normalize_text(normalize_text(s)) ==
        normalize_text(s)``. Runs in C-level passes; about 1 s per 100 MB of ASCII.

    Raises:
        TypeError: if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects str, got {type(text).__name__}")
    if fold_accents:
        text = strip_accents(text)
    # Each non-ASCII code point (and any lone surrogate) becomes b"?", which the table
    # below turns into a space: exactly wikifil's treatment of non a-z bytes.
    data = text.encode("ascii", "replace").translate(_BYTE_TABLE)
    for digit, word in _DIGIT_REPLACEMENTS:
        if digit in data:
            data = data.replace(digit, word)
    return _SPACE_RUNS.sub(b" ", data).decode("ascii")
