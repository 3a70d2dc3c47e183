"""normalize_text: text8's own cleaning (wikifil.pl's last step)."""

import random
import shutil
import subprocess

import pytest

from mlx_rnn.core.data import DataError, read_text
from mlx_rnn.core.normalize import DIGIT_WORDS, normalize_text, strip_accents
from mlx_rnn.core.vocab import TEXT8

# wikifil.pl's cleaning lines (Matt Mahoney, http://mattmahoney.net/dc/textdata.html,
# Appendix A), applied to each line of stdin.
WIKIFIL_TAIL = r"""
while (<STDIN>) { chomp;
    $_=" $_ ";
    tr/A-Z/a-z/;
    s/0/ zero /g; s/1/ one /g; s/2/ two /g; s/3/ three /g; s/4/ four /g;
    s/5/ five /g; s/6/ six /g; s/7/ seven /g; s/8/ eight /g; s/9/ nine /g;
    tr/a-z/ /cs;
    chop;
    print "$_\n";
}
"""


@pytest.mark.parametrize("raw, clean", [
    ("Hello, World!", "hello world "),
    ("anarchism originated", "anarchism originated"),
    ("42", " four two "),
    ("in 1984 he", "in one nine eight four he"),
    ("R2-D2", "r two d two "),
    ("3.14", " three one four "),
    ("don't", "don t"),
    ("tab\tand\nnewline\r\n", "tab and newline "),
    ("  padded  ", " padded "),
    ("x", "x"),
    ("", ""),
    ("!!!", " "),
    ("café", "caf "),
    ("naïve façade", "na ve fa ade"),
    ("Straße", "stra e"),
    ("日本語 text", " text"),
    ("ABCxyz", "abcxyz"),
])
def test_examples(raw, clean):
    assert normalize_text(raw) == clean


def test_each_digit_spelled_separately():
    for d, word in enumerate(DIGIT_WORDS):
        assert normalize_text(str(d)) == f" {word} "
    assert normalize_text("a1234567890b") == (
        "a one two three four five six seven eight nine zero b")


def test_non_ascii_digits_and_letters_are_spaces():
    # Arabic-Indic digit, fullwidth digit, Kelvin sign (lowercases to 'k' in Python), dotted I.
    assert normalize_text("a\u0663b\uff11c\u212ad\u0130e") == "a b c d e"


def test_output_alphabet_and_single_spaces_on_random_text():
    rng = random.Random(0)
    pool = "abcXYZ 0123456789.,;:'\"!?-\n\t\r éüßж中\u0301\u200b\U0001f600"
    for _ in range(300):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(0, 60)))
        out = normalize_text(s)
        assert TEXT8.first_unknown(out) == -1, (s, out)
        assert "  " not in out
        assert normalize_text(out) == out  # idempotent


def test_fold_accents_option():
    assert normalize_text("Café Dvořák, Straße, Æsir, Øresund", fold_accents=True) == (
        "cafe dvorak strasse aesir oresund")
    assert strip_accents("résumé") == "resume"
    # off by default: accents become spaces like text8
    assert normalize_text("résumé") == "r sum "


def test_rejects_non_str():
    with pytest.raises(TypeError):
        normalize_text(b"bytes")


def test_fast_enough_for_large_text():
    big = "The Quick Brown Fox, 1999! " * 40_000  # ~1 MB
    out = normalize_text(big)
    assert out.startswith("the quick brown fox one nine nine nine the")


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl not installed")
def test_matches_wikifil_perl():
    """Same output as wikifil.pl's cleaning, up to its edge handling (always a leading
    space, the trailing one chopped)."""
    rng = random.Random(1)
    pool = "abcdEFGH 0123456789 .,;'-()[]&#é"
    lines = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 50))) for _ in range(200)]
    lines += ["Anarchism originated as a term of abuse", "In 1984, 42 people", "x", ""]
    res = subprocess.run(["perl", "-e", WIKIFIL_TAIL], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, encoding="utf-8", check=True)
    perl_out = res.stdout.split("\n")[:-1]
    assert len(perl_out) == len(lines)
    for line, want in zip(lines, perl_out):
        # pad like wikifil, then drop the trailing space like its chop
        assert normalize_text(" " + line + " ")[:-1] == want, line


def test_read_text_normalize(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("Hello, World!\nIn 2024 we met.\n", encoding="utf-8")
    assert read_text(p, normalize=True) == "hello world in two zero two four we met "
    q = tmp_path / "punct.txt"
    q.write_text("é", encoding="utf-8")
    with pytest.raises(DataError, match="no letters or digits left"):  # nothing to score is refused
        read_text(q, normalize=True)
    with pytest.raises(DataError):
        read_text(tmp_path / "missing.txt", normalize=True)
