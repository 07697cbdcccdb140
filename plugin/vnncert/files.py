"""Reading input files: `.gz` is accepted wherever a path is (docs/formats.md, "compressed files").

Every read is bounded: a file (or what a `.gz` expands to) larger than the cap for its kind is
refused with a clear error before it is read whole, and only regular files are opened, so that a
FIFO, a terminal or /dev/zero can neither block the read nor feed it forever.
"""
from __future__ import annotations

import errno
import os
import stat
import zlib
from typing import List, Type

from .errors import VnncertError

MiB = 1 << 20
# A property file (or what its .gz expands to) may hold at most this many bytes: over a hundred
# times the largest VNN-COMP property known to the project (nn4sys, 2.2 MB); the parser needs a
# few dozen bytes of working memory per byte of text, so this also bounds its memory.
MAX_PROPERTY_BYTES = 256 * MiB
# An ONNX model is one protobuf message, which cannot exceed 2 GiB (protobuf's hard limit).
MAX_MODEL_BYTES = 2048 * MiB
_CHUNK = 4 * MiB


def _human(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_maybe_gzip(path: str, error: Type[VnncertError], what: str, limit: int = MAX_MODEL_BYTES) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic; failures raise `error`.

    Only a regular file is read (a FIFO or a device is refused before any blocking read), and
    neither the file nor its decompressed content may exceed `limit` bytes (default: the model
    cap; `spec.read_text` passes MAX_PROPERTY_BYTES).
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: cannot read {what}: {_kind(st.st_mode)}, not a regular file")
    if st.st_size > limit:
        raise error(f"{path}: {what} is {_human(st.st_size)}; the limit is {_human(limit)}")
    try:
        # O_NONBLOCK: should the path have been replaced by a FIFO since the stat, open does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise error(f"{path}: cannot read {what}: {_kind(os.fstat(fd).st_mode)}, not a regular file")
            head = f.read(2)
            if head == b"\x1f\x8b":
                return _gunzip(f, head, path, error, what, limit)
            data = head + f.read(limit + 1 - len(head))
        except OSError as e:
            if e.errno == errno.EAGAIN:
                raise error(f"{path}: cannot read {what}: not a regular file") from None
            raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    if len(data) > limit:  # the file grew after the stat
        raise error(f"{path}: {what} is larger than the limit of {_human(limit)}")
    return data


def _gunzip(f, head: bytes, path: str, error: Type[VnncertError], what: str, limit: int) -> bytes:
    """Stream-decompress every gzip member of f (already past `head`), at most `limit` bytes out."""
    out: List[bytes] = []
    size = 0
    d = zlib.decompressobj(wbits=31)  # gzip header and trailer; zlib checks the CRC and the length
    members = 0
    data = head
    at_end = False
    while True:
        if not data and not at_end:
            data = f.read(_CHUNK)
            at_end = not data
        if d.eof:  # a member ended: another member may follow, or zero padding (as gzip(1) allows)
            members += 1
            if len(data) < 2 and not at_end:
                data += f.read(_CHUNK)
                at_end = len(data) < 2
                continue
            if not data.strip(b"\x00"):
                if at_end:
                    break
                data = b""
                continue
            if not data.startswith(b"\x1f\x8b"):
                raise error(f"{path}: broken gzip file: unexpected bytes after gzip member {members}")
            d = zlib.decompressobj(wbits=31)
        if at_end and not data:
            raise error(f"{path}: broken gzip file: truncated (the compressed data ends before its end marker)")
        # in pieces of at most _CHUNK bytes, so that memory stays near what was accepted so far; an
        # output-bound call is repeated (zlib may hold output back) before more input is read
        want = min(limit + 1 - size, _CHUNK)
        try:
            piece = d.decompress(data, want)
        except zlib.error as e:
            raise error(f"{path}: broken gzip file: corrupt compressed data ({_zlib_reason(e)})") from None
        size += len(piece)
        if size > limit:
            raise error(f"{path}: {what} decompresses to more than {_human(limit)} (the limit); refused")
        out.append(piece)
        data = d.unused_data if d.eof else d.unconsumed_tail
        if not data and not d.eof and len(piece) == want:
            data = b""
            while len(piece) == want and not d.eof:  # drain what zlib still holds
                want = min(limit + 1 - size, _CHUNK)
                piece = d.decompress(b"", want)
                size += len(piece)
                if size > limit:
                    raise error(f"{path}: {what} decompresses to more than {_human(limit)} (the limit); refused")
                out.append(piece)
            data = d.unused_data if d.eof else b""
        if at_end and not data and d.eof:
            break
    return b"".join(out)


def _zlib_reason(e: zlib.error) -> str:
    msg = str(e)
    # "Error -3 while decompressing data: invalid block type" -> "invalid block type"
    return msg.split(": ", 1)[1] if ": " in msg else msg
