"""Checks on the files a command will write, made before any work: nothing the user owns is destroyed.

- An output may not be the same file as an input or as another output: same path, the same file
  through a symlink (realpath) or a hard link (device and inode). Such a command line is refused.
- Each output must be writable: not a folder, in an existing folder where a file can be created
  (tried for real: a temporary file is made and removed), and not an existing read-only file.
- A symlink at an output path is written through (`results.atomic_write`): the file it points to
  is replaced, the link stays. A path that is not a regular file (/dev/null, /dev/stdout, a FIFO)
  is written in place.

Every check raises `OutputError` (a ValueError) with a message that names the option and the path.
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterable, Optional, Tuple

from .results import output_target


class OutputError(ValueError):
    pass


def _identity(path: str):
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def same_file(a: str, b: str) -> bool:
    """True when writing `a` would change the file `b` names (paths, symlinks, hard links)."""
    if _identity(a) == _identity(b):
        return True
    return os.path.realpath(a) == os.path.realpath(b)


def check_distinct(outputs: Iterable[Tuple[str, Optional[str]]], inputs: Iterable[Tuple[str, Optional[str]]]) -> None:
    """outputs / inputs: (what, path) pairs, path None when not given. Raise OutputError on any overlap."""
    outs = [(w, p) for w, p in outputs if p]
    ins = [(w, p) for w, p in inputs if p]
    for i, (what, path) in enumerate(outs):
        for in_what, in_path in ins:
            if same_file(path, in_path):
                raise OutputError(f"{what} {path} is the same file as the {in_what} {in_path}: refusing to overwrite it")
        for other_what, other in outs[:i]:
            if same_file(path, other):
                raise OutputError(f"{what} {path} is the same file as {other_what} {other}: give two different files")


def check_writable(what: str, path: str) -> None:
    """Raise OutputError unless a file can be written at `path` (see the module docstring)."""
    target = output_target(path)
    if os.path.isdir(target):
        raise OutputError(f"{what} {path}: is a folder")
    folder = os.path.dirname(os.path.abspath(target)) or "."
    if not os.path.isdir(folder):
        raise OutputError(f"{what} {path}: no such folder {folder}")
    if os.path.exists(target):
        if not os.access(target, os.W_OK):
            raise OutputError(f"{what} {path}: the file is read-only")
        if not os.path.isfile(target):  # /dev/null, /dev/stdout, a FIFO: written in place
            return
    _probe(what, path, folder)


def check_folder_writable(what: str, folder: str) -> None:
    """A folder that files will be written into: it exists and takes a file, or can be created."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise OutputError(f"{what} {folder}: {probe} is not a folder")
    _probe(what, folder, probe)


def _probe(what: str, path: str, folder: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vnncert-probe-", dir=folder)
    except OSError as e:
        raise OutputError(f"{what} {path}: cannot write in {folder}: {e.strerror}") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
