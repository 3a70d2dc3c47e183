"""The README and docs/: short, self-contained, and their pictures drawn by the project's own code."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def png_text_chunks(path: Path) -> dict:
    """The tEXt/zTXt/iTXt key-value chunks of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    out, pos = {}, 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = rest[4:].split(b"\0", 2)[-1].decode("utf-8")
        pos += 12 + length
    return out


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines"


def test_readme_pictures_exist_and_were_drawn_by_the_project():
    text = README.read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", text)
    assert len(pictures) >= 2, pictures
    for rel in pictures:
        path = ROOT / rel
        assert path.is_file(), f"{rel} is missing"
        software = png_text_chunks(path).get("Software", "")
        assert software.startswith("mlx-rnn "), f"{rel}: not drawn by mlx-rnn's plotting code ({software!r})"


def test_every_local_link_resolves():
    for page in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_nothing_points_outside_the_repository():
    for page in [README, *DOCS]:
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text, page.name
        assert not re.search(r"\bissue\s*#?\d", text, re.IGNORECASE), f"{page.name} names a tracker issue"
