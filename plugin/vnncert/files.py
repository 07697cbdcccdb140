"""Reading input files: `.gz` is accepted wherever a path is (docs/formats.md, "Our conventions")."""
from __future__ import annotations

import gzip
from typing import Type

from .errors import VnncertError


def read_maybe_gzip(path: str, error: Type[VnncertError], what: str) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic; failures raise `error`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise error(f"{path}: broken gzip file: {e}") from None
    return data
