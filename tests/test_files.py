"""Bounded reads of properties and models (files.read_maybe_gzip): regular files only, caps on
plain and decompressed sizes, gzip streamed member by member, corrupt or truncated gzip named with
zlib's reason. The command-line side (exit 2, one line, memory limits) is in tests/test_hostile.py."""
import gzip
import os

import pytest

from vnncert.errors import NetworkError, SpecError
from vnncert.files import MAX_MODEL_BYTES, MAX_PROPERTY_BYTES, read_maybe_gzip
from vnncert.spec import load_spec

HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
BOX = "(assert (>= X_0 0.5))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))\n"
PROP = (HEAD + BOX + "(assert (>= Y_1 Y_0))\n").encode()


def test_caps_are_documented_constants():
    assert MAX_PROPERTY_BYTES == 256 << 20 and MAX_MODEL_BYTES == 2048 << 20


def test_gzip_members_padding_and_plain_files(tmp_path):
    p = tmp_path / "p.vnnlib.gz"
    p.write_bytes(gzip.compress(PROP[:50]) + gzip.compress(PROP[50:]) + bytes(7))  # members, zero padding
    assert read_maybe_gzip(str(p), SpecError, "property file") == PROP
    q = tmp_path / "p.vnnlib"
    q.write_bytes(PROP)
    assert read_maybe_gzip(str(q), SpecError, "property file") == PROP
    assert load_spec(str(p)).n_inputs == 2


@pytest.mark.parametrize("make, pattern", [
    (lambda d: d[:10] + bytes([0x07]) + d[11:], r"broken gzip file: corrupt compressed data \(invalid block type\)"),
    (lambda d: d[:-4] + bytes(4), r"broken gzip file: corrupt compressed data \(incorrect length check\)"),
    (lambda d: d[:-8] + bytes(8), r"broken gzip file: corrupt compressed data \(incorrect data check\)"),
    (lambda d: d[:len(d) // 2], r"broken gzip file: truncated"),
    (lambda d: d[:2], r"broken gzip file: truncated"),
    (lambda d: d + b"trailing junk", r"broken gzip file: unexpected bytes after gzip member 1"),
])
def test_broken_gzip_says_which_file_and_why(tmp_path, make, pattern):
    p = tmp_path / "p.vnnlib.gz"
    p.write_bytes(make(gzip.compress(PROP)))
    with pytest.raises(SpecError, match=str(p).replace(".", r"\.") + ": " + pattern):
        read_maybe_gzip(str(p), SpecError, "property file")
    with pytest.raises(SpecError, match=pattern):
        load_spec(str(p))
    m = tmp_path / "m.onnx.gz"
    m.write_bytes(make(gzip.compress(b"\x08\x07" * 1000)))
    with pytest.raises(NetworkError, match=pattern):
        read_maybe_gzip(str(m), NetworkError, "ONNX file")


def test_every_truncation_and_bit_flip_is_an_error_or_the_data(tmp_path):
    import random

    rng = random.Random(3)
    data = gzip.compress(PROP * 20)
    p = tmp_path / "c.gz"
    for cut in range(2, len(data), 7):
        p.write_bytes(data[:cut])
        with pytest.raises(SpecError):
            read_maybe_gzip(str(p), SpecError, "x")
    for _ in range(200):
        b = bytearray(data)
        b[rng.randrange(2, len(b))] ^= 1 << rng.randrange(8)
        p.write_bytes(bytes(b))
        try:
            assert read_maybe_gzip(str(p), SpecError, "x") == PROP * 20  # a flip in the header's spare fields
        except SpecError:
            pass


def test_limits_for_plain_and_compressed_files(tmp_path):
    p = tmp_path / "p.vnnlib"
    p.write_bytes(PROP)
    assert read_maybe_gzip(str(p), SpecError, "property file", len(PROP)) == PROP
    with pytest.raises(SpecError, match=r"p\.vnnlib: property file is \d+ bytes; the limit is 10 bytes"):
        read_maybe_gzip(str(p), SpecError, "property file", 10)
    bomb = tmp_path / "bomb.gz"
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    bomb.write_bytes(member * 40)  # 40 MiB of zeros in 40 KB
    with pytest.raises(SpecError, match=r"bomb\.gz: property file decompresses to more than 8 MiB \(the limit\); refused"):
        read_maybe_gzip(str(bomb), SpecError, "property file", 8 << 20)
    assert len(read_maybe_gzip(str(bomb), SpecError, "property file", 40 << 20)) == 40 << 20


def test_fifos_devices_and_directories_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "p.vnnlib"
    os.mkfifo(fifo)  # no writer: a blocking open would hang forever
    with pytest.raises(SpecError, match=r"p\.vnnlib: cannot read property file: a FIFO \(named pipe\), not a regular file"):
        load_spec(str(fifo))
    with pytest.raises(SpecError, match=r"/dev/zero: cannot read property file: a character device"):
        load_spec("/dev/zero")
    with pytest.raises(SpecError, match=r"cannot read property file: a directory"):
        load_spec(str(tmp_path))
    with pytest.raises(SpecError, match=r"missing\.vnnlib: cannot read property file: No such file"):
        load_spec(str(tmp_path / "missing.vnnlib"))
    with pytest.raises(NetworkError, match=r"cannot read ONNX file: a FIFO"):
        from vnncert import load_network

        load_network(str(fifo))
