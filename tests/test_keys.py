import os
import stat

import numpy as np
import pytest

from rdec.runtime import keys
from rdec.runtime.errors import InputError, KeyFileError


def test_key_file_round_trip_and_mode(tmp_path):
    path = tmp_path / "k.key"
    keys.write_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = keys.read_key_file(path)
    assert len(key) == 32
    with pytest.raises(KeyFileError):
        keys.write_key_file(path)  # never overwrite a key silently
    assert keys.read_key_file(path) == key


@pytest.mark.parametrize("content", [b"", b"rdec-key-v1\nzz\n", b"hello world", b"rdec-key-v1\n" + b"0" * 63 + b"\n"])
def test_bad_key_files(tmp_path, content):
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        keys.read_key_file(path)
    with pytest.raises(KeyFileError):
        keys.read_key_file(tmp_path / "missing.key")


def test_subkeys_depend_on_key_nonce_and_purpose():
    k, n = bytes(32), bytes(16)
    base = keys.subkey(k, n, "a")
    assert base != keys.subkey(k, n, "b")
    assert base != keys.subkey(k, bytes(15) + b"\x01", "a")
    assert base != keys.subkey(bytes(31) + b"\x01", n, "a")
    assert base == keys.subkey(k, n, "a")


def test_draws_are_in_range_and_reproducible():
    bounds = np.array([1, 2, 3, 7, 1000, 2**31 + 1, 2**32 - 1] * 50)
    a = keys.KeyStream(bytes(32), bytes(16), "t").below(bounds)
    b = keys.KeyStream(bytes(32), bytes(16), "t").below(bounds)
    assert (a == b).all() and (a >= 0).all() and (a < bounds).all()
    # bounds near 2^32 reject about half the words: the retry path must still give the same draws
    big = np.full(2000, 2**31 + 1)
    s1, s2 = keys.KeyStream(bytes(32), bytes(16), "r"), keys.KeyStream(bytes(32), bytes(16), "r")
    assert (s1.below(big) == np.concatenate([s2.below(big[:700]), s2.below(big[700:])])).all()


def test_draws_equal_plain_rejection_sampling():
    """The fast path (no division unless a word is in the top b) gives exactly the textbook draws."""
    rng = np.random.default_rng(5)
    bounds = np.concatenate([rng.integers(1, 2**32 + 1, 300), [1, 2, 2**32, 2**32 - 1, 3 * 2**30],
                             np.arange(600, 1, -1)])
    stream = keys.KeyStream(bytes(32), bytes(16), "plain")
    words = iter(keys.KeyStream(bytes(32), bytes(16), "plain").words(50000).tolist())
    expected = []
    for b in bounds.tolist():
        w = next(words)
        while w >= (2**32 // b) * b:
            w = next(words)
        expected.append(w % b)
    assert stream.below(bounds).tolist() == expected


def test_permutation_asks_for_more_words_when_short():
    words = keys.KeyStream(bytes(32), bytes(16), "p").words(50)
    assert keys._permutation(words, 100)[1] == -1
    perm, used = keys._permutation(words, 40)
    assert used == 39 and sorted(perm) == list(range(40))
    assert (perm == keys.KeyStream(bytes(32), bytes(16), "p").permutation(40)).all()


def test_words_fetched_in_advance_give_the_same_draws():
    """An encryptor fetches words before it knows how many it needs (`prefetch`); draws afterwards, in several
    calls, must be those of a stream that fetched nothing in advance, as the decryptor's."""
    bounds = np.array([2, 3, 7, 1000, 2**31 + 1] * 40)
    ahead, plain = keys.KeyStream(bytes(32), bytes(16), "p"), keys.KeyStream(bytes(32), bytes(16), "p")
    ahead.prefetch(1000)
    for part in (bounds[:50], bounds[50:120], bounds[120:]):
        assert (ahead.below(part) == plain.below(part)).all()
    assert (ahead.words(5) == plain.words(5)).all()


@pytest.mark.parametrize("bad", [[0], [5, -1], [2**32 + 1]])
def test_draw_bounds_out_of_range_are_refused(bad):
    with pytest.raises(ValueError):
        keys.KeyStream(bytes(32), bytes(16), "t").below(np.array(bad))


def test_permutation_is_uniform():
    """Chi-square over all 24 permutations of 4 elements (p > 1e-6 for a fair shuffle)."""
    stream = keys.KeyStream(os.urandom(32), os.urandom(16), "perm")
    counts = {}
    n = 24000
    for _ in range(n):
        p = tuple(stream.permutation(4))
        counts[p] = counts.get(p, 0) + 1
    assert len(counts) == 24
    expected = n / 24
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 70  # 23 degrees of freedom; 70 is far beyond the 1e-6 tail


def test_invert_permutation():
    p = keys.KeyStream(bytes(32), bytes(16), "x").permutation(50)
    assert sorted(p) == list(range(50))
    assert (p[keys.invert_permutation(p)] == np.arange(50)).all()


def test_check_nonce():
    with pytest.raises(InputError):
        keys.check_nonce(b"short")


def test_key_files_are_read_bounded_and_only_from_regular_files(tmp_path):
    with pytest.raises(KeyFileError, match="not a regular file"):
        keys.read_key_file("/dev/zero")  # would otherwise be read until memory runs out
    (tmp_path / "big.key").write_bytes(b"rdec-key-v1\n" + b"0" * 5000)
    with pytest.raises(KeyFileError, match="larger than"):
        keys.read_key_file(tmp_path / "big.key")
