"""Secret keys, per-message subkeys and keystream-driven permutations (DESIGN.md "Keys and containers").

A key is 256 random bits in a file (hex text, mode 0600). Every image/frame gets a fresh random nonce;
HKDF-SHA256(key, salt=nonce, info=purpose) gives independent per-purpose subkeys, and a ChaCha20
keystream under a subkey drives unbiased Fisher-Yates permutations and per-block choices.
The key itself is never printed, logged, or put into an exception message.
"""
from __future__ import annotations

import contextlib
import hmac
import os
import warnings
from pathlib import Path

import numba
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import InputError, KeyFileError
from .fileio import atomic_write, read_bytes

KEY_BYTES = 32
NONCE_BYTES = 16
_KEY_HEADER = "rdec-key-v1"


def generate_key() -> bytes:
    """A fresh 256-bit secret from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def new_nonce() -> bytes:
    """A fresh random 128-bit nonce (one per image or frame)."""
    return os.urandom(NONCE_BYTES)


def write_key_file(path: str | os.PathLike, key: bytes | None = None, overwrite: bool = False) -> None:
    """Write a key file readable only by its owner (0600); refuse to replace an existing key."""
    key = generate_key() if key is None else key
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"a key must be {KEY_BYTES} bytes")
    if not str(path):
        raise KeyFileError("a key file name is required")
    if Path(path).is_dir():
        raise KeyFileError(f"is a folder, not a key file: {path}")
    if Path(path).exists() and not overwrite:
        raise KeyFileError(f"refusing to overwrite existing key file {path} (--force replaces it)")
    atomic_write(path, f"{_KEY_HEADER}\n{key.hex()}\n".encode(), mode=0o600)


def read_key_file(path: str | os.PathLike) -> bytes:
    """Read a key file written by `write_key_file`; typed error otherwise (any other file, even one of 32
    bytes, is refused: a typed passphrase or a stray file must not silently become a key)."""
    if not Path(path).exists():
        raise KeyFileError(f"no such key file: {path}")
    data = read_bytes(path, limit=1024, error=KeyFileError)
    try:
        lines = data.decode("ascii").split()
    except UnicodeDecodeError:
        raise KeyFileError(f"not an rdec key file: {path}") from None
    if len(lines) != 2 or lines[0] != _KEY_HEADER or len(lines[1]) != 2 * KEY_BYTES:
        raise KeyFileError(f"not an rdec key file (expected '{_KEY_HEADER}' and 64 hex digits): {path}")
    try:
        key = bytes.fromhex(lines[1])
    except ValueError:
        raise KeyFileError(f"not an rdec key file (bad hex digits): {path}") from None
    with contextlib.suppress(OSError):
        if os.stat(path).st_mode & 0o077:  # as ssh does for private keys: it works, but say so
            warnings.warn(f"key file {path} is readable by other users: chmod 600 {path}", stacklevel=2)
    return key


def check_key(key: bytes) -> bytes:
    """Validate a key given through the Python API."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise KeyFileError(f"a key must be {KEY_BYTES} bytes")
    return bytes(key)


def one_bit_off(key: bytes) -> bytes:
    """The key with its lowest bit flipped: the key-sensitivity tests of the evaluations."""
    return bytes([key[0] ^ 1]) + key[1:]


def check_nonce(nonce: bytes) -> bytes:
    if not isinstance(nonce, (bytes, bytearray)) or len(nonce) != NONCE_BYTES:
        raise InputError(f"a nonce must be {NONCE_BYTES} bytes")
    return bytes(nonce)


def subkey(key: bytes, nonce: bytes, purpose: str, length: int = 32) -> bytes:
    """HKDF-SHA256(key, salt=nonce, info=purpose): independent keys for independent uses."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=nonce, info=purpose.encode()).derive(key)


def hmac_sha256(key: bytes, *parts: bytes | memoryview) -> bytes:
    mac = hmac.new(key, digestmod="sha256")
    for p in parts:
        mac.update(p)
    return mac.digest()


def tags_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class KeyStream:
    """ChaCha20 keystream as a sequence of uint32 words; reading is sequential and reproducible."""

    def __init__(self, key: bytes, nonce: bytes, purpose: str):
        k = subkey(key, nonce, purpose)
        # cryptography's ChaCha20 takes a 16-byte nonce (32-bit counter || 96-bit nonce); the subkey is
        # already unique per (key, nonce, purpose), so a zero nonce is safe.
        self._enc = Cipher(algorithms.ChaCha20(k, b"\x00" * 16), mode=None).encryptor()
        self._unread = np.zeros(0, dtype=np.uint32)

    def prefetch(self, n: int) -> None:
        """Compute the next `n` words now (they are read later as if fetched then): a caller that knows about how
        many words it will need fetches them while the cipher code is warm in cache."""
        fresh = self._fresh(n)
        self._unread = np.concatenate([self._unread, fresh]) if self._unread.size else fresh

    def _fresh(self, n: int) -> np.ndarray:
        return np.frombuffer(self._enc.update(bytes(4 * n)), dtype="<u4").astype(np.uint32, copy=False)

    def words(self, n: int) -> np.ndarray:
        """The next `n` keystream words as uint32 (words fetched in advance or left over by a draw come first)."""
        head, self._unread = self._unread[:n], self._unread[n:]
        if head.size == n:
            return head
        fresh = self._fresh(n - head.size)
        return np.concatenate([head, fresh]) if head.size else fresh

    def run(self, fn, n: int):
        """fn(words) -> (result, words used) on the keystream from here, given n + 16 words and more while it
        answers used = -1 (it ran out; its result must depend only on the words, so a retry gives the same);
        the stream then moves on by the words used. Returns the result."""
        words = self.words(n + 16)
        while True:
            result, used = fn(words)
            if used >= 0:
                break
            words = np.concatenate([words, self.words(n // 8 + 64)])
        rest = words[used:]  # back in front of any words fetched in advance
        self._unread = np.concatenate([rest, self._unread]) if self._unread.size else rest
        return result

    def below(self, bounds: np.ndarray) -> np.ndarray:
        """One unbiased uniform integer in [0, b) for each b in `bounds`, in order (rejection sampling)."""
        bounds = np.ascontiguousarray(bounds, dtype=np.int64).ravel()
        if bounds.size and not (1 <= bounds.min() and bounds.max() <= 1 << 32):
            raise ValueError("draw bounds must lie in [1, 2^32]")
        return self.run(lambda words: _draw_below(words, bounds), bounds.size)

    def permutation(self, n: int) -> np.ndarray:
        """A uniformly random permutation of range(n) by Fisher-Yates."""
        return self.run(lambda words: _permutation(words, n), max(n - 1, 0))


@numba.njit(cache=True, inline="always")
def draw_below(words, i, b):
    """One unbiased uniform integer in [0, b) from words[i:] by rejection sampling: accept a word
    w < floor(2^32 / b) * b, then w % b is exactly uniform. That limit exceeds 2^32 - b, so only the top b
    words need the division that computes it (half the time of computing it for every draw), and a power of
    two b needs no division at all. Returns (draw, index of the next word), the draw -1 if the words ran out.
    """
    top = np.int64(1) << 32
    while i < words.size:
        w = np.int64(words[i])
        i += 1
        if b & (b - 1) == 0:  # a power of two accepts every word, and w % b is its low bits
            return w & (b - 1), i
        if w <= top - b or w < top // b * b:
            return w % b, i
    return np.int64(-1), i


@numba.njit(cache=True)
def _draw_below(words, bounds):
    """A draw below each bound in turn; (draws, words used), used = -1 if `words` ran out."""
    out = np.empty(bounds.size, dtype=np.int64)
    i = 0
    for k in range(bounds.size):
        out[k], i = draw_below(words, i, bounds[k])
        if out[k] < 0:
            return out, -1
    return out, i


@numba.njit(cache=True, inline="always")
def fisher_yates_from(words, w, perm):
    """Shuffle perm in place by Fisher-Yates drawing from words[w:]: for i = n-1 .. 1 swap perm[i] with
    perm[j], j drawn below i + 1. Returns the index of the next word, -1 if the words ran out."""
    n = perm.size
    for k in range(n - 1):
        i = n - 1 - k
        j, w = draw_below(words, w, i + 1)
        if j < 0:
            return -1
        t = perm[i]
        perm[i] = perm[j]
        perm[j] = t
    return w


@numba.njit(cache=True)
def _permutation(words, n):
    perm = np.arange(n, dtype=np.int64)
    return perm, fisher_yates_from(words, 0, perm)


def invert_permutation(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size, dtype=perm.dtype)
    return inv
