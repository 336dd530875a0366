"""Image loading and atomic writes: typed errors, EXIF orientation, oversized images."""
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from rdec.runtime.errors import InputError
from rdec.runtime.fileio import atomic_write, load_image


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    img[:5] = 255  # a bright top band
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees clockwise
    Image.fromarray(img).save(tmp_path / "o.jpg", "JPEG", exif=exif.tobytes())
    shown = load_image(tmp_path / "o.jpg")
    assert shown.shape == (30, 20, 3)
    assert shown[:, -5:].mean() > 200 and shown[:, :5].mean() < 50  # the band is now on the right


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_decompression_bombs_and_bad_files_give_typed_errors(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(InputError, match="too large"):
        load_image(tmp_path / "bomb.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="unknown or damaged") as e:
        load_image(tmp_path / "empty.jpg")
    assert "BytesIO" not in str(e.value)


def test_atomic_write_names_the_target_on_failure(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(InputError, match="cannot write .*adir: it is a folder"):
        atomic_write(tmp_path / "adir", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]


def test_damaged_exif_leaves_the_image_as_stored(tmp_path):
    """Pillow's EXIF transpose raises on some damaged EXIF blocks; the image then loads as stored."""
    img = np.zeros((20, 30, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cam"  # Make (ASCII) ...
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", exif=exif.tobytes())
    # ... re-tagged as Compression, which must be an integer: re-serializing this EXIF fails
    (tmp_path / "bad.jpg").write_bytes(buf.getvalue().replace(b"\x01\x0f\x00\x02", b"\x01\x03\x00\x02", 1))
    from PIL import ImageOps
    with Image.open(tmp_path / "bad.jpg") as im, pytest.raises(Exception):
        ImageOps.exif_transpose(im)  # the failure this guards against
    assert load_image(tmp_path / "bad.jpg").shape in ((20, 30, 3), (30, 20, 3))


def test_atomic_write_keeps_permissions_follows_symlinks_and_can_be_exclusive(tmp_path):
    import stat

    target = tmp_path / "secret.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(os.stat(target).st_mode) == 0o600
    link = tmp_path / "link.png"
    link.symlink_to(target)
    atomic_write(link, b"through")
    assert link.is_symlink() and target.read_bytes() == b"through"
    with pytest.raises(FileExistsError):
        atomic_write(target, b"never", exclusive=True)
    assert target.read_bytes() == b"through"
    atomic_write(tmp_path / "fresh", b"x", exclusive=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "link.png", "secret.png"]  # no temp files
