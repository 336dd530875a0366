"""ECEA round trips, bit-exact restoration, viewer compatibility and the DC-run invariants."""
import io

import numpy as np
import pytest
from PIL import Image

from rdec.runtime.errors import IntegrityError
from rdec.runtime.keys import KeyStream
from rdec.secure_jpeg import container, ecea, markers
from rdec.secure_jpeg.blocks import decrypt_blocks, encrypt_blocks, padded_size
from rdec.secure_jpeg.dcperm import dc_stream, dc_values, permute_dc, same_sign_runs
from rdec.secure_jpeg.entropy import analyze_scan

cv2 = pytest.importorskip("cv2", reason="OpenCV (dev extra) decodes ECE files in the compatibility tests")


def psnr(a, b):
    mse = np.mean((a.astype(float) - b) ** 2)
    return 10 * np.log10(255**2 / mse)


def units_of(jpeg: bytes):
    parsed = markers.parse(jpeg)
    return [analyze_scan(parsed, s) for s in parsed.scans]


def stuffed_count(jpeg: bytes) -> int:
    parsed = markers.parse(jpeg)
    return sum(jpeg[s.data_start:s.data_end].count(b"\xff\x00") for s in parsed.scans)


@pytest.mark.parametrize("block", [8, 16, 32])
@pytest.mark.parametrize("subsampling", ["444", "422", "420"])
def test_round_trip_every_block_and_subsampling(photo, key, block, subsampling):
    ece = ecea.encrypt(photo, key, block=block, subsampling=subsampling, quality=85)
    out = ecea.decrypt(ece, key)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert psnr(photo, out) > 24
    # decrypted pixels are exactly stage 1 undone on a plain decode of the restored EC file
    header, ec = ecea.decrypt_to_jpeg(ece, key)
    plain = np.asarray(Image.open(io.BytesIO(ec)))
    assert (out == decrypt_blocks(plain, KeyStream(key, header.nonce, "ecea/stage1"), block, *photo.shape[:2])).all()


@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (17, 200), (64, 64)])
@pytest.mark.parametrize("gray", [False, True])
def test_odd_sizes_and_grayscale(photo, key, shape, gray):
    img = photo[: shape[0], : shape[1]]
    img = img[:, :, 1].copy() if gray else img.copy()
    ece = ecea.encrypt(img, key, block=16)
    out = ecea.decrypt(ece, key)
    assert out.shape == img.shape
    viewer = np.asarray(Image.open(io.BytesIO(ece)))
    assert viewer.shape[:2] == padded_size(*img.shape[:2], 16)
    assert (viewer.ndim == 2) == gray
    header, ec = ecea.decrypt_to_jpeg(ece, key)
    plain = np.asarray(Image.open(io.BytesIO(ec)))  # the decoder we use gives Pillow's pixels exactly
    assert (ecea.jpeg_decode(ec) == plain).all()
    assert (out == decrypt_blocks(plain, KeyStream(key, header.nonce, "ecea/stage1"), 16, *img.shape[:2])).all()


def test_fill_bytes_before_a_marker(photo, key):
    jpeg = ecea.jpeg_encode(photo)
    end = markers.parse(jpeg).scans[0].data_end
    assert jpeg[end:] == b"\xff\xd9"
    filled = jpeg[:end] + b"\xff\xff\xff" + jpeg[end:]  # fill bytes may precede any marker
    assert markers.parse(filled).scans[0].data_end == end
    ece = ecea.encrypt_jpeg(filled, key)
    assert ecea.decrypt_to_jpeg(ece, key)[1] == filled


def test_stage1_is_exactly_invertible_without_jpeg(photo, key):
    for block in (8, 16, 32):
        for img in (photo, photo[:, :, 0].copy(), photo[:50, :77].copy()):
            enc = encrypt_blocks(img, KeyStream(key, bytes(16), "s"), block)
            assert enc.shape[:2] == padded_size(*img.shape[:2], block)
            dec = decrypt_blocks(enc, KeyStream(key, bytes(16), "s"), block, *img.shape[:2])
            assert (dec == img).all()
            assert not (enc[: img.shape[0], : img.shape[1]] == img).all()
            # in place: the same pixels, contiguous, in the caller's buffer when its width needs no padding
            grid = enc.copy()
            inplace = decrypt_blocks(grid, KeyStream(key, bytes(16), "s"), block, *img.shape[:2], in_place=True)
            assert (inplace == img).all() and inplace.flags.c_contiguous
            assert np.shares_memory(inplace, grid) == (grid.shape[1] == img.shape[1])
            # a read-only grid is left alone
            frozen = enc.copy()
            frozen.flags.writeable = False
            assert (decrypt_blocks(frozen, KeyStream(key, bytes(16), "s"), block, *img.shape[:2],
                                   in_place=True) == img).all()
            assert (frozen == enc).all()
            # a grid in this thread's scratch buffer is not decrypted in place (the next call overwrites it)
            scratch = encrypt_blocks(img, KeyStream(key, bytes(16), "s"), block, scratch=True)
            dec = decrypt_blocks(scratch, KeyStream(key, bytes(16), "s"), block, *img.shape[:2], in_place=True)
            encrypt_blocks(img, KeyStream(key, bytes(16), "t"), block, scratch=True)
            assert (dec == img).all()


@pytest.mark.parametrize("restart", [1, 3, 7])
def test_restart_intervals(photo, key, restart):
    ece = ecea.encrypt(photo, key, block=8, restart_interval=restart)
    parsed = markers.parse(ece)
    assert parsed.scans[0].restart_interval == restart
    assert ece.count(b"\xff\xd0") > 0
    header, ec = ecea.decrypt_to_jpeg(ece, key)
    # runs never cross a restart marker: every run lies inside one interval
    for units in units_of(ec):
        runs = same_sign_runs(units)
        ivl = units.interval[runs.order]
        for s, n in zip(runs.start, runs.length):
            assert len(set(ivl[s: s + n])) == 1
    assert psnr(photo, ecea.decrypt(ece, key)) > 24


def test_ec_scan_restored_bit_for_bit_and_sizes_differ_only_by_stuffing(photo, key):
    nonce = bytes(range(16))
    ece = ecea.encrypt(photo, key, nonce=nonce)
    _, ec = ecea.decrypt_to_jpeg(ece, key)
    # rebuild EC independently: stage 1 + the standard encoder with the same nonce
    expected = ecea.jpeg_encode(encrypt_blocks(photo, KeyStream(key, nonce, "ecea/stage1"), 16))
    assert ec == expected
    body = ece[: container.find(ece)] + ece[container.find(ece) + container.SEGMENT_BYTES:]
    assert len(body) - len(ec) == stuffed_count(body) - stuffed_count(ec)
    assert body != ec


def test_same_sign_runs_and_legal_dc(photo, key):
    ece = ecea.encrypt(photo, key, block=8, quality=90)
    _, ec = ecea.decrypt_to_jpeg(ece, key)
    body = container.open_sealed(ece, key)[1]
    moved = 0
    for u_ec, u_ece in zip(units_of(ec), units_of(body)):
        # the sign pattern, hence the runs, survives; the multiset of units inside each run is unchanged
        assert ((u_ec.diff < 0) == (u_ece.diff < 0)).all()
        runs = same_sign_runs(u_ec)
        v_ec, v_ece = dc_values(u_ec), dc_values(u_ece)
        for s, n in zip(runs.start, runs.length):
            idx = runs.order[s: s + n]
            assert sorted(u_ec.diff[idx]) == sorted(u_ece.diff[idx])
            # the running DC sum stays between the run's unchanged end points
            lo = v_ec[idx[-1]] - u_ec.diff[idx].sum()
            hi = v_ec[idx[-1]]
            assert v_ece[idx[-1]] == hi
            assert (np.minimum(lo, hi) <= v_ece[idx]).all() and (v_ece[idx] <= np.maximum(lo, hi)).all()
            moved += int((u_ec.diff[idx] != u_ece.diff[idx]).any())
        assert np.abs(v_ece).max() <= 2047
    assert moved > 0


def test_ece_opens_in_pillow_and_opencv(photo, key):
    for gray in (False, True):
        img = photo[:, :, 0].copy() if gray else photo
        ece = ecea.encrypt(img, key, restart_interval=4)
        with Image.open(io.BytesIO(ece)) as im:
            im.load()
            pil = np.asarray(im)
        cv = cv2.imdecode(np.frombuffer(ece, np.uint8), cv2.IMREAD_UNCHANGED)
        assert cv is not None and cv.shape[:2] == pil.shape[:2]
        # scrambled: far from the original
        assert psnr(img, pil[: img.shape[0], : img.shape[1]]) < 15


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2], [cv2.IMWRITE_JPEG_OPTIMIZE, 1],
                                    [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]])
def test_stage2_on_jpegs_from_other_encoders(photo, key, params):
    ok, buf = cv2.imencode(".jpg", photo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80] + params)
    original = buf.tobytes()
    ece = ecea.encrypt_jpeg(original, key)
    assert ece != original
    header, restored = ecea.decrypt_to_jpeg(ece, key)
    assert restored == original and not header.stage1
    assert (ecea.decrypt(ece, key) == np.asarray(Image.open(io.BytesIO(original)))).all()


def test_pillow_optimized_tables_and_grayscale_stage2(photo, key):
    for img in (photo, photo[:, :, 2].copy()):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=60, optimize=True)
        original = buf.getvalue()
        assert ecea.decrypt_to_jpeg(ecea.encrypt_jpeg(original, key), key)[1] == original


def test_fresh_nonce_per_encryption(small_photo, key):
    a, b = ecea.encrypt(small_photo, key), ecea.encrypt(small_photo, key)
    assert a != b
    assert container.read_header(a).nonce != container.read_header(b).nonce


def test_permutation_depends_on_key(photo):
    _, ec = ecea.decrypt_to_jpeg(ecea.encrypt(photo, bytes(32)), bytes(32))
    n = bytes(16)
    assert permute_dc(ec, dc_stream(bytes(32), n)) != permute_dc(ec, dc_stream(bytes(31) + b"\x01", n))
    assert permute_dc(permute_dc(ec, dc_stream(bytes(32), n)), dc_stream(bytes(32), n), inverse=True) == ec


def test_cmyk_jpeg_stage2_decrypts_through_the_fallback_decoder(key):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 56, 4)).astype(np.uint8), "CMYK").save(buf, "JPEG", quality=80)
    jpeg = buf.getvalue()
    out = ecea.decrypt(ecea.encrypt_jpeg(jpeg, key), key)  # TurboJPEG cannot convert CMYK: Pillow decodes it
    assert (out == np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))).all()


def test_stage2_hides_metadata_and_restores_it_bit_for_bit(photo, key):
    """EXIF (camera, orientation), comments, an APP2 segment larger than one JPEG segment can hold, and
    bytes after EOI (as phones append videos) are encrypted into the header, then put back exactly."""
    exif = Image.Exif()
    exif[0x010F] = "SECRETCAM"
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=80, exif=exif.tobytes(), comment=b"SECRET comment")
    plain = buf.getvalue()
    app2 = b"\xff\xe2" + (65535).to_bytes(2, "big") + b"SECRET" * 10922 + b"x"
    original = plain[:2] + app2 + app2 + plain[2:] + b"SECRET trailer" * 100
    ece = ecea.encrypt_jpeg(original, key)
    assert b"SECRET" not in ece and b"Exif" not in ece
    assert Image.open(io.BytesIO(ece)).size == (photo.shape[1], photo.shape[0])
    assert ecea.decrypt_to_jpeg(ece, key)[1] == original
    with pytest.raises(IntegrityError):  # the encrypted metadata is covered by the tag
        at = ece.index(container.META_IDENT) + 40
        ecea.decrypt_to_jpeg(ece[:at] + bytes([ece[at] ^ 1]) + ece[at + 1:], key)


def test_files_with_metadata_are_marked_and_wrong_key_analysis_still_runs(photo, key):
    """A stage-2 file carrying metadata says so (version 2 + flag), so an older rdec refuses it instead of
    returning a file without its metadata; an unverified decryption with a wrong key (key-sensitivity
    analysis) gives wrong pixels, not an error."""
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=80, comment=b"note")
    ece = ecea.encrypt_jpeg(buf.getvalue(), key)
    pos = container.find(ece) + 4 + len(container.IDENT)
    assert ece[pos] == container.VERSION_METADATA and ece[pos + 1] & container.FLAG_METADATA
    pixel_mode = ecea.encrypt(photo, key)  # no metadata: version 1, readable by every rdec
    assert pixel_mode[container.find(pixel_mode) + 4 + len(container.IDENT)] == container.VERSION
    wrong = ecea.decrypt(ece, bytes(32), verify=False)
    assert wrong.shape == photo.shape and psnr(photo, wrong) < 30


@pytest.mark.parametrize("color", [True, False])
def test_block_key_is_the_permutation_then_the_per_block_draws(color):
    """The compiled block-key draw gives what drawing each part in turn gives, and asks for more words
    (used = -1) instead of reading past the ones it has."""
    from rdec.secure_jpeg.blocks import _draw_block_key, block_key

    n = 300
    key = block_key(KeyStream(bytes(32), bytes(16), "bk"), n, color)
    ref = KeyStream(bytes(32), bytes(16), "bk")
    perm = ref.permutation(n)
    bounds = [8, 2, 6] if color else [8, 2]
    rest = [ref.below(np.full(n, b)) for b in bounds]
    assert (key.perm == perm).all() and (key.dihedral == rest[0]).all() and (key.negate == rest[1]).all()
    assert (key.order == (rest[2] if color else 0)).all()
    words = KeyStream(bytes(32), bytes(16), "bk").words(n - 1 + len(bounds) * n - 5)
    assert _draw_block_key(words, n, len(bounds))[1] == -1


def test_dc_source_map_asks_for_more_words_when_short(photo):
    from rdec.secure_jpeg.dcperm import _source_map

    parsed = markers.parse(ecea.jpeg_encode(photo))
    u = analyze_scan(parsed, parsed.scans[0])
    runs = same_sign_runs(u)
    words = dc_stream(bytes(32), bytes(16)).words(runs.bounds.size + 16)
    src, used = _source_map(u.comp, u.interval, u.diff, u.blocks_per_mcu, words, False)
    assert runs.bounds.size <= used <= words.size and sorted(src) == list(range(src.size))
    assert _source_map(u.comp, u.interval, u.diff, u.blocks_per_mcu, words[:runs.bounds.size - 1], False)[1] == -1
