"""Property-based tests of the baseline JPEG scan reader/writer."""
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rdec.secure_jpeg import markers
from rdec.secure_jpeg.dcperm import dc_stream, permute_dc
from rdec.secure_jpeg.entropy import analyze_scan, rewrite_scan, scan_layout

images = st.tuples(st.integers(1, 70), st.integers(1, 70), st.booleans(), st.integers(0, 2**31 - 1)).map(
    lambda t: _image(*t))


def _image(h, w, gray, seed):
    rng = np.random.default_rng(seed)
    # smooth gradient plus noise: realistic DC runs of both signs
    y, x = np.mgrid[:h, :w]
    base = (x * rng.uniform(-3, 3) + y * rng.uniform(-3, 3) + rng.uniform(0, 255)) % 256
    img = np.clip(base[..., None] + rng.normal(0, rng.uniform(0, 60), (h, w, 3)), 0, 255).astype(np.uint8)
    return img[:, :, 0].copy() if gray else img


jpeg_params = st.fixed_dictionaries({
    "quality": st.integers(1, 100),
    "subsampling": st.sampled_from([0, 1, 2]),
    "optimize": st.booleans(),
    "restart_marker_blocks": st.integers(0, 5),
})


def encode(img, params):
    params = dict(params)
    if not params["restart_marker_blocks"]:
        del params["restart_marker_blocks"]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", **params)
    return buf.getvalue()


@settings(max_examples=80, deadline=None)
@given(images, jpeg_params)
def test_identity_rewrite_is_bit_exact(img, params):
    jpeg = encode(img, params)
    parsed = markers.parse(jpeg)
    for scan in parsed.scans:
        units = analyze_scan(parsed, scan)
        layout = scan_layout(parsed.frame, scan)
        assert units.length.size == layout.n_mcu * layout.slot_comp.size
        assert (units.length >= 1).all()
        assert rewrite_scan(units, np.arange(units.length.size)) == jpeg[scan.data_start:scan.data_end]


@settings(max_examples=80, deadline=None)
@given(images, jpeg_params, st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16))
def test_permute_then_restore_is_bit_exact_and_decodable(img, params, key, nonce):
    jpeg = encode(img, params)
    enc = permute_dc(jpeg, dc_stream(key, nonce))
    assert permute_dc(enc, dc_stream(key, nonce), inverse=True) == jpeg
    with Image.open(io.BytesIO(enc)) as im:
        im.load()
        assert im.size == (img.shape[1], img.shape[0])


@settings(max_examples=40, deadline=None)
@given(images, jpeg_params, st.integers(0, 2**31 - 1))
def test_arbitrary_unit_moves_reparse(img, params, seed):
    """Any reordering of DC units within a component and interval gives a scan the reader parses back,
    finding each moved unit (same length and value) where the writer put it."""
    jpeg = encode(img, params)
    parsed = markers.parse(jpeg)
    scan = parsed.scans[0]
    units = analyze_scan(parsed, scan)
    rng = np.random.default_rng(seed)
    src = np.arange(units.length.size)
    for c in np.unique(units.comp):
        for iv in np.unique(units.interval):
            idx = np.flatnonzero((units.comp == c) & (units.interval == iv))
            src[idx] = rng.permutation(idx)
    new = jpeg[:scan.data_start] + rewrite_scan(units, src) + jpeg[scan.data_end:]
    reparsed = markers.parse(new)
    moved = analyze_scan(reparsed, reparsed.scans[0])
    assert (moved.length == units.length[src]).all()
    assert (moved.diff == units.diff[src]).all()


@pytest.mark.parametrize("ff_every", [2, 64, 4096])
def test_scan_end_and_its_0xff_bytes_however_many(ff_every):
    """The scan's 0xFF offsets are recorded on the way to its end; a scan with more of them than that pass has
    room for (every other byte stuffed) is counted and recorded again: the same offsets either way."""
    body = np.zeros(20000, dtype=np.uint8)
    body[::ff_every] = 0xFF  # each followed by its stuffed zero
    body[0x501::0x1000] = 0xFF  # with a fill byte before the marker too, now and then
    data = np.concatenate([body, [0xFF, 0xFF, 0xD9]]).astype(np.uint8)
    end, ff = markers._scan_ff(data)
    expected = np.flatnonzero(data[:end] == 0xFF)
    assert data[end] == 0xFF and data[end - 1] != 0xFF and (ff == expected).all()
