"""The ECEA header: an APP15 segment (skipped by standard decoders) carrying version, parameters, nonce,
a key-check value and an HMAC-SHA256 tag over the whole file.

The tag is computed over the complete ECE file with the tag field zeroed, so any change anywhere (headers,
entropy-coded data, the parameters themselves) or a truncation is detected before anything is decrypted.
The key-check value (an HKDF output bound to the nonce) tells a wrong key apart from a modified file.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from rdec.runtime.errors import FormatError, IntegrityError, UnsupportedError, WrongKeyError
from rdec.runtime.keys import NONCE_BYTES, hmac_sha256, subkey, tags_equal

MARKER = 0xEF  # APP15
IDENT = b"RDEC-ECEA\x00"
VERSION = 1
FLAG_STAGE1 = 1
_FIELDS = struct.Struct(">BBBBII")  # version, flags, block, channels, height, width
CHECK_BYTES = 8
TAG_BYTES = 32
_BODY = len(IDENT) + _FIELDS.size + NONCE_BYTES + CHECK_BYTES + TAG_BYTES
SEGMENT_BYTES = 4 + _BODY  # FF EF, length, body


@dataclass
class Header:
    flags: int
    block: int
    channels: int
    height: int
    width: int
    nonce: bytes

    @property
    def stage1(self) -> bool:
        return bool(self.flags & FLAG_STAGE1)


def _check_value(key: bytes, nonce: bytes) -> bytes:
    return subkey(key, nonce, "ecea/key-check", CHECK_BYTES)


def _insert_at(data: bytes) -> int:
    """After SOI and a leading JFIF/EXIF APP0/APP1 segment, so viewers still find those first."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] in (0xE0, 0xE1):
        pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
    return pos


def seal(jpeg: bytes, header: Header, key: bytes) -> bytes:
    """Insert the header segment into a JPEG and fill in its HMAC tag."""
    body = IDENT + _FIELDS.pack(VERSION, header.flags, header.block, header.channels, header.height,
                                header.width) + header.nonce + _check_value(key, header.nonce)
    segment = b"\xff" + bytes([MARKER]) + struct.pack(">H", _BODY + 2) + body
    at = _insert_at(jpeg)
    unsigned = jpeg[:at] + segment + bytes(TAG_BYTES) + jpeg[at:]
    tag = hmac_sha256(subkey(key, header.nonce, "ecea/mac"), unsigned)
    tag_at = at + SEGMENT_BYTES - TAG_BYTES
    return unsigned[:tag_at] + tag + unsigned[tag_at + TAG_BYTES:]


def find(data: bytes) -> int:
    """Offset of the rdec segment among the leading APPn segments; FormatError if the file has none."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise FormatError("not a JPEG file (no SOI marker)")
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
        length = (data[pos + 2] << 8) | data[pos + 3]
        if data[pos + 1] == MARKER and data[pos + 4: pos + 4 + len(IDENT)] == IDENT:
            if length != _BODY + 2 or pos + SEGMENT_BYTES > len(data):
                raise FormatError("corrupted rdec ECEA header")
            return pos
        pos += 2 + length
    raise FormatError("not an rdec ECEA file (no rdec header segment); was it encrypted with rdec?")


def read_header(data: bytes) -> Header:
    pos = find(data) + 4 + len(IDENT)
    version, flags, block, channels, height, width = _FIELDS.unpack_from(data, pos)
    if version != VERSION:
        raise UnsupportedError(f"ECEA format version {version} is not supported (this rdec reads {VERSION})")
    nonce = data[pos + _FIELDS.size: pos + _FIELDS.size + NONCE_BYTES]
    if channels not in (1, 3, 4) or height < 1 or width < 1:
        raise FormatError("corrupted rdec ECEA header")
    return Header(flags, block, channels, height, width, nonce)


def open_sealed(data: bytes, key: bytes, verify: bool = True) -> tuple[Header, bytes]:
    """Check key and tag, then return the header and the JPEG with the rdec segment removed.

    verify=False skips both checks (for key-sensitivity analysis only: it decrypts with any key).
    """
    data = bytes(data)
    at = find(data)
    header = read_header(data)
    check_at = at + SEGMENT_BYTES - TAG_BYTES - CHECK_BYTES
    if verify:
        if not tags_equal(data[check_at: check_at + CHECK_BYTES], _check_value(key, header.nonce)):
            raise WrongKeyError("wrong key: this file was encrypted with a different key")
        tag_at = check_at + CHECK_BYTES
        unsigned = data[:tag_at] + bytes(TAG_BYTES) + data[tag_at + TAG_BYTES:]
        if not tags_equal(data[tag_at: tag_at + TAG_BYTES], hmac_sha256(subkey(key, header.nonce, "ecea/mac"), unsigned)):
            raise IntegrityError("authentication failed: the file was modified or truncated after encryption")
    return header, data[:at] + data[at + SEGMENT_BYTES:]
