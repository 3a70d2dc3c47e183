"""What the dynamic loader has loaded (glibc): ``dladdr``, the link map and a library's GOT slot.

Used to say which object really provides ``cblas_sgemm`` to ``libmlx.so``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


class _LinkMap(ctypes.Structure):
    pass


_LinkMap._fields_ = [
    ("l_addr", ctypes.c_size_t),
    ("l_name", ctypes.c_char_p),
    ("l_ld", ctypes.c_void_p),
    ("l_next", ctypes.POINTER(_LinkMap)),
    ("l_prev", ctypes.POINTER(_LinkMap)),
]

_RTLD_DI_LINKMAP = 2


def libc() -> Any:
    """The process's own symbols (libc and everything loaded globally), as a ctypes library."""
    return ctypes.CDLL(None)


def object_at(addr: int) -> tuple[str | None, str | None]:
    """(path of the object containing addr, nearest symbol name) or (None, None), by ``dladdr``."""
    if not addr:
        return None, None
    try:
        dladdr = libc().dladdr
    except AttributeError:
        try:
            dladdr = ctypes.CDLL(ctypes.util.find_library("dl") or "libdl.so.2").dladdr
        except (OSError, AttributeError):
            return None, None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(ctypes.c_void_p(addr), ctypes.byref(info)):
        return None, None
    fname = info.dli_fname.decode(errors="replace") if info.dli_fname else None
    sname = info.dli_sname.decode(errors="replace") if info.dli_sname else None
    return fname, sname


def _symbol_addr(lib: Any, name: str) -> int:
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0
    except AttributeError:
        return 0


def object_path_of(lib: Any, symbol: str) -> str | None:
    """The path of the object that provides ``symbol`` as ``lib`` resolves it, or None."""
    return object_at(_symbol_addr(lib, symbol))[0]


def _loaded_objects() -> list[tuple[str, int]]:
    """(path, load base) of every object in the main link-map namespace."""
    try:
        dlinfo = libc().dlinfo
    except AttributeError:
        return []
    dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    dlinfo.restype = ctypes.c_int
    lm = ctypes.POINTER(_LinkMap)()
    if dlinfo(libc()._handle, _RTLD_DI_LINKMAP, ctypes.byref(lm)) != 0 or not lm:
        return []
    while lm.contents.l_prev:  # rewind to the head
        lm = lm.contents.l_prev
    out = []
    while lm:
        name = lm.contents.l_name.decode(errors="replace") if lm.contents.l_name else ""
        out.append((name, lm.contents.l_addr))
        lm = lm.contents.l_next
    return out


def find_libmlx() -> tuple[str, int] | None:
    """(path, load address) of the loaded libmlx, or None."""
    for path, base in _loaded_objects():
        if os.path.basename(path).startswith("libmlx."):
            return path, base
    return None


def _got_offset(path: str, symbol: str) -> int | None:
    """Offset (vaddr) of the GOT slot the loader fills for ``symbol`` in ``path``.

    Parses the ELF64 little-endian section headers, the .dynsym/.dynstr tables
    and every SHT_RELA section (``.rela.plt``: R_X86_64_JUMP_SLOT /
    R_AARCH64_JUMP_SLOT; ``.rela.dyn``: GLOB_DAT).
    """
    import mmap
    import struct

    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
                return None
            e_shoff, = struct.unpack_from("<Q", m, 0x28)
            e_shentsize, e_shnum, _ = struct.unpack_from("<HHH", m, 0x3A)
            secs = []
            for i in range(e_shnum):
                (_, sh_type, _, _, sh_off, sh_size, sh_link, _, _, sh_entsize) = struct.unpack_from(
                    "<IIQQQQIIQQ", m, e_shoff + i * e_shentsize
                )
                secs.append((sh_type, sh_off, sh_size, sh_link, sh_entsize))
            for sh_type, off, size, link, entsize in secs:
                if sh_type != 4 or not entsize:  # SHT_RELA
                    continue
                sym_type, sym_off, _, str_idx, sym_entsize = secs[link]
                if sym_type not in (11, 2):  # SHT_DYNSYM / SHT_SYMTAB
                    continue
                str_off = secs[str_idx][1]
                want = symbol.encode()
                for j in range(size // entsize):
                    r_offset, r_info = struct.unpack_from("<QQ", m, off + j * entsize)
                    sym = r_info >> 32
                    if not sym:
                        continue
                    st_name, = struct.unpack_from("<I", m, sym_off + sym * sym_entsize)
                    start = str_off + st_name
                    end = m.find(b"\0", start)
                    if m[start:end] == want:
                        return r_offset
    except (OSError, ValueError, struct.error, IndexError):
        return None
    return None


def read_got(libmlx: str, base: int, symbol: str) -> int | None:
    """The address in libmlx's GOT slot for ``symbol`` (what its calls really reach; 0 when the
    slot is unresolved), or None when the library has no such slot."""
    off = _got_offset(libmlx, symbol)
    if off is None:
        return None
    return ctypes.c_void_p.from_address(base + off).value or 0
