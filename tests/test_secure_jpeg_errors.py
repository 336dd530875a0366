"""Refusals with typed errors, and fuzzing: mutated or truncated files only ever raise RdecError."""
import io
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rdec.runtime.errors import (FormatError, InputError, IntegrityError, RdecError, UnsupportedError,
                                 WrongKeyError)
from rdec.secure_jpeg import ecea, markers
from rdec.secure_jpeg.dcperm import dc_stream, permute_dc


def pillow_jpeg(img, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", **kw)
    return buf.getvalue()


def sof_offset(jpeg: bytes) -> int:
    return next(off for m, off, _ in markers.parse(jpeg).segments if m in (0xC0, 0xC1))


def test_progressive_refused(photo, key):
    with pytest.raises(UnsupportedError, match="progressive"):
        ecea.encrypt_jpeg(pillow_jpeg(photo, progressive=True), key)


@pytest.mark.parametrize("marker,what", [(0xC9, "arithmetic"), (0xC3, "lossless"), (0xCA, "arithmetic")])
def test_other_processes_refused(photo, key, marker, what):
    jpeg = bytearray(pillow_jpeg(photo))
    jpeg[sof_offset(bytes(jpeg)) + 1] = marker
    with pytest.raises(UnsupportedError, match=what):
        ecea.encrypt_jpeg(bytes(jpeg), key)


def test_12_bit_refused(photo, key):
    jpeg = bytearray(pillow_jpeg(photo))
    jpeg[sof_offset(bytes(jpeg)) + 4] = 12  # precision byte
    with pytest.raises(UnsupportedError, match="12-bit"):
        ecea.encrypt_jpeg(bytes(jpeg), key)


def test_not_jpeg_and_truncated_plain_jpeg(photo, key):
    with pytest.raises(FormatError):
        ecea.encrypt_jpeg(b"\x89PNG\r\n\x1a\n" + bytes(100), key)
    jpeg = pillow_jpeg(photo)
    with pytest.raises(FormatError, match="truncated"):
        ecea.encrypt_jpeg(jpeg[: len(jpeg) // 2], key)


def test_wrong_key_tampering_truncation_and_foreign_files(small_photo, key):
    ece = ecea.encrypt(small_photo, key)
    with pytest.raises(WrongKeyError):
        ecea.decrypt(ece, bytes([key[0] ^ 1]) + key[1:])
    tampered = bytearray(ece)
    tampered[-100] ^= 0x10
    with pytest.raises(IntegrityError):
        ecea.decrypt(bytes(tampered), key)
    with pytest.raises(IntegrityError):
        ecea.decrypt(ece[:-10], key)
    with pytest.raises(FormatError, match="not an rdec"):
        ecea.decrypt(pillow_jpeg(small_photo), key)
    with pytest.raises(FormatError):
        ecea.decrypt(b"GIF89a" + bytes(50), key)


def test_bad_parameters(small_photo, key):
    with pytest.raises(RdecError):
        ecea.encrypt(small_photo, key, block=12)
    with pytest.raises(RdecError):
        ecea.encrypt(small_photo, key, quality=0)
    with pytest.raises(RdecError):
        ecea.encrypt(small_photo, key, subsampling="411")
    with pytest.raises(RdecError):
        ecea.encrypt(small_photo.astype(np.float32), key)
    with pytest.raises(RdecError):
        ecea.encrypt(np.zeros((4, 4, 2), np.uint8), key)
    with pytest.raises(RdecError):
        ecea.encrypt(small_photo, b"short key")
    # look-alikes of valid values are refused, not half-accepted
    for kwargs in ({"block": 16.0}, {"block": True}, {"quality": True}, {"quality": 75.0}, {"restart_interval": True}):
        with pytest.raises(InputError):
            ecea.encrypt(small_photo, key, **kwargs)
    for not_bytes in ("file.jpg", small_photo, None):  # a path, an array: the API takes a file's bytes
        with pytest.raises(InputError, match="must be bytes"):
            ecea.decrypt(not_bytes, key)
        with pytest.raises(InputError, match="must be bytes"):
            ecea.encrypt_jpeg(not_bytes, key)


@pytest.fixture(scope="module")
def files(small_photo):
    key = bytes(32)
    return {
        "ece": ecea.encrypt(small_photo, key, restart_interval=2),
        "plain": pillow_jpeg(small_photo, quality=70, restart_marker_blocks=3),
        "gray": pillow_jpeg(small_photo[:, :, 0].copy(), quality=90),
    }


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # flip random bytes
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:  # truncate
        b = b[: rng.randrange(len(b))]
    elif kind == 2:  # delete a slice
        i = rng.randrange(len(b))
        del b[i: i + rng.randint(1, 64)]
    else:  # insert marker-like bytes
        i = rng.randrange(len(b))
        b[i:i] = bytes([0xFF, rng.choice([0x00, 0xD0, 0xD9, 0xDA, 0xC4, 0xC0, 0xFF, rng.randrange(256)])])
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_fuzz_only_typed_errors(files, seed):
    rng = random.Random(seed)
    key = bytes(32)
    for name, data in files.items():
        bad = mutate(data, rng)
        if name == "ece":
            try:
                ecea.decrypt(bad, key)
            except RdecError:
                pass
            # with authentication off the parser itself sees the garbage
            try:
                permute_dc(bad, dc_stream(key, bytes(16)), inverse=True)
            except RdecError:
                pass
        else:
            try:
                out = permute_dc(bad, dc_stream(key, bytes(16)))
                assert permute_dc(out, dc_stream(key, bytes(16)), inverse=True) == bad
            except RdecError:
                pass


def test_sizes_jpeg_cannot_hold_once_padded_are_refused(key):
    """65490 pixels fit JPEG, but not once padded to whole 16-pixel blocks (65504 > 65500)."""
    with pytest.raises(InputError, match="too large for JPEG once padded"):
        ecea.encrypt(np.zeros((8, 65490), np.uint8), key)
