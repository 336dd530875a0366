"""The ECEA header: an APP15 segment (skipped by standard decoders) carrying version, parameters, nonce,
a key-check value and an HMAC-SHA256 tag over the whole file.

The tag is computed over the complete ECE file with the tag field zeroed, so any change anywhere (headers,
entropy-coded data, the parameters themselves) or a truncation is detected before anything is decrypted.
The key-check value (an HKDF output bound to the nonce) tells a wrong key apart from a modified file.
A stage-2-only file's metadata (APPn and COM segments, bytes after EOI) follows in APP15 META segments,
encrypted with the image's own subkey, so the file shows no EXIF, GPS position or thumbnail in the clear;
such files are format version 2 with FLAG_METADATA, so an rdec that cannot restore metadata refuses them
instead of returning the JPEG without it. Files without metadata stay version 1.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from rdec.runtime.errors import FormatError, IntegrityError, UnsupportedError, WrongKeyError
from rdec.runtime.keys import NONCE_BYTES, KeyStream, hmac_sha256, subkey, tags_equal

MARKER = 0xEF  # APP15
IDENT = b"RDEC-ECEA\x00"
VERSION = 1  # files without metadata segments (readable by every rdec)
VERSION_METADATA = 2  # files with META segments: an rdec that cannot restore them refuses the file
FLAG_STAGE1 = 1
FLAG_METADATA = 2
_FIELDS = struct.Struct(">BBBBII")  # version, flags, block, channels, height, width
CHECK_BYTES = 8
TAG_BYTES = 32
_BODY = len(IDENT) + _FIELDS.size + NONCE_BYTES + CHECK_BYTES + TAG_BYTES
SEGMENT_BYTES = 4 + _BODY  # FF EF, length, body
META_IDENT = b"RDEC-META\x00"
_META_CHUNK = 65535 - 2 - len(META_IDENT)


@dataclass
class Header:
    flags: int
    block: int
    channels: int
    height: int
    width: int
    nonce: bytes
    # Metadata of a stage-2-only input (APPn and COM segments, bytes after EOI: EXIF with GPS, thumbnails,
    # appended videos), as (offset in the original file, bytes); stored encrypted in META segments.
    metadata: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def stage1(self) -> bool:
        return bool(self.flags & FLAG_STAGE1)


class SealKeys:
    """The subkeys that seal one image: its key-check value and its MAC key (and the key itself, for the
    metadata cipher). An encryptor derives them before the JPEG encode, while the crypto code is warm in cache
    (`ecea.encrypt`)."""

    def __init__(self, key: bytes, nonce: bytes):
        self.key, self.nonce = key, nonce
        self.check = subkey(key, nonce, "ecea/key-check", CHECK_BYTES)
        self.mac = subkey(key, nonce, "ecea/mac")


def _insert_at(data: bytes) -> int:
    """After SOI and a leading JFIF/EXIF APP0/APP1 segment, so viewers still find those first."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] in (0xE0, 0xE1):
        pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
    return pos


def _meta_cipher(blob: bytes, key: bytes, nonce: bytes) -> bytes:
    """XOR with the keystream of this image's metadata subkey (encrypts and decrypts)."""
    ks = KeyStream(key, nonce, "ecea/metadata").words(-(-len(blob) // 4)).view(np.uint8)[:len(blob)]
    return (np.frombuffer(blob, dtype=np.uint8) ^ ks).tobytes()


def _meta_segments(pieces: list[tuple[int, bytes]], key: bytes, nonce: bytes) -> bytes:
    """The metadata pieces, serialized, encrypted and cut into APP15 META segments (none if no pieces)."""
    if not pieces:
        return b""
    blob = _meta_cipher(b"".join(struct.pack(">II", at, len(b)) + b for at, b in pieces), key, nonce)
    return b"".join(b"\xff" + bytes([MARKER]) + struct.pack(">H", 2 + len(META_IDENT) + len(chunk)) + META_IDENT
                    + chunk for chunk in (blob[i:i + _META_CHUNK] for i in range(0, len(blob), _META_CHUNK)))


def _take_meta_segments(data: bytes, at: int, key: bytes, nonce: bytes,
                        verify: bool = True) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Remove the META segments that follow the header (now at `at`) and decrypt their pieces. Unverified
    (a key-sensitivity analysis with a wrong key), undecodable metadata is dropped instead of refused."""
    pos, chunks = at, []
    while data[pos:pos + 2] == b"\xff" + bytes([MARKER]) and data[pos + 4:pos + 4 + len(META_IDENT)] == META_IDENT:
        length = (data[pos + 2] << 8) | data[pos + 3]
        chunks.append(data[pos + 4 + len(META_IDENT):pos + 2 + length])
        pos += 2 + length
    if not chunks:
        return data, []
    blob, pieces, i = _meta_cipher(b"".join(chunks), key, nonce), [], 0
    while i < len(blob):
        n = struct.unpack_from(">I", blob, i + 4)[0] if i + 8 <= len(blob) else -1
        if n < 0 or i + 8 + n > len(blob):
            if verify:
                raise FormatError("corrupted rdec metadata segment")
            return data[:at] + data[pos:], []
        pieces.append((struct.unpack_from(">I", blob, i)[0], blob[i + 8:i + 8 + n]))
        i += 8 + n
    return data[:at] + data[pos:], pieces


def seal(jpeg: bytes, header: Header, keys: SealKeys) -> bytes:
    """Insert the header segment (and the encrypted metadata, if any) into a JPEG and fill in its HMAC tag."""
    if keys.nonce != header.nonce:
        raise ValueError("internal error: the sealing keys belong to another nonce")
    flags = header.flags & ~FLAG_METADATA | (FLAG_METADATA if header.metadata else 0)
    version = VERSION_METADATA if header.metadata else VERSION
    body = IDENT + _FIELDS.pack(version, flags, header.block, header.channels, header.height,
                                header.width) + header.nonce + keys.check
    segment = b"\xff" + bytes([MARKER]) + struct.pack(">H", _BODY + 2) + body
    at = _insert_at(jpeg)
    meta = _meta_segments(header.metadata, keys.key, header.nonce)
    view = memoryview(jpeg)  # the tag is computed over the pieces, so the image is copied only once
    tag = hmac_sha256(keys.mac, view[:at], segment, bytes(TAG_BYTES), meta, view[at:])
    return b"".join((view[:at], segment, tag, meta, view[at:]))


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
    if version not in (VERSION, VERSION_METADATA):
        raise UnsupportedError(f"ECEA format version {version} is not supported (this rdec reads {VERSION} and "
                               f"{VERSION_METADATA})")
    if (version == VERSION_METADATA) != bool(flags & FLAG_METADATA):
        raise FormatError("corrupted rdec ECEA header")
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
        keys = SealKeys(key, header.nonce)
        if not tags_equal(data[check_at: check_at + CHECK_BYTES], keys.check):
            raise WrongKeyError("wrong key: this file was encrypted with a different key")
        tag_at = check_at + CHECK_BYTES
        view = memoryview(data)
        mac = hmac_sha256(keys.mac, view[:tag_at], bytes(TAG_BYTES),
                          view[tag_at + TAG_BYTES:])
        if not tags_equal(data[tag_at: tag_at + TAG_BYTES], mac):
            raise IntegrityError("authentication failed: the file was modified or truncated after encryption")
    data = data[:at] + data[at + SEGMENT_BYTES:]
    if header.flags & FLAG_METADATA:
        data, header.metadata = _take_meta_segments(data, at, key, header.nonce, verify)
    return header, data
