"""Atomic file writes and image loading shared by every CLI command."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError


def atomic_write(path: str | os.PathLike, data: bytes, mode: int | None = None, exclusive: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    A crash or Ctrl-C leaves either the old file or the complete new one, never a half-written file. A file
    that is replaced keeps its permissions (unless `mode` is given), and a symlink is written through, as
    with open(). exclusive=True never replaces anything: FileExistsError if `path` exists (also when another
    process takes the name first), so concurrent writers each claim their own name.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output folder does not exist: {parent}")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = _default_mode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:  # the message would name the hidden temporary file; name the target instead
        raise InputError(f"cannot write {path}: {e.strerror}") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            _claim(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, FileExistsError) and exclusive:
            raise
        if isinstance(e, OSError):
            raise InputError(f"cannot write {path}: {e.strerror}") from None
        raise


def _claim(tmp: str, path: Path) -> None:
    """Give the finished temporary file the name `path` only if no file has it: a hard link fails if the
    name exists. Where hard links are not supported (FAT/exFAT SD cards), the name is claimed with O_EXCL,
    then replaced."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _default_mode() -> int:
    """What open() would give a new file: 0o666 minus the process umask (mkstemp itself uses 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def make_folder(path: str | os.PathLike) -> Path:
    """Create an output folder (and its parents) if missing; InputError naming it if that fails (e.g. a file
    of that name)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder {path}: {e.strerror}") from None
    return path


def read_bytes(path: str | os.PathLike, limit: int | None = None, error: type = InputError,
               what: str = "file") -> bytes:
    """Read a whole regular file (at most `limit` bytes), turning OS errors into a typed error that calls it
    `what`. Devices and pipes are refused: /dev/zero would be read until memory runs out."""
    try:
        mode = os.stat(path).st_mode  # checked before opening: opening a FIFO would block
        if not stat.S_ISREG(mode):
            raise error(f"is a folder, not a {what}: {path}" if stat.S_ISDIR(mode) else
                        f"not a regular {what}: {path}")
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except FileNotFoundError:
        raise error(f"no such {what}: {path}") from None
    except ValueError:  # a NUL byte in the name
        raise error(f"not a valid {what} name: {str(path)!r}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from None
    if limit is not None and len(data) > limit:
        raise error(f"{path} is larger than {limit} bytes")
    return data


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load PNG/JPEG/BMP/TIFF (any format Pillow reads) as uint8 HxW (grayscale) or HxWx3 (RGB)."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    data = read_bytes(path)
    try:
        with warnings.catch_warnings():
            # sizes are checked where they matter (JPEG's limit); above 2x this limit Pillow raises instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return image_to_array(_upright(im))
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"image too large: {path} ({e})") from None
    except UnidentifiedImageError:  # its message names the in-memory buffer, not the file
        raise InputError(f"not a readable image: {path} (unknown or damaged image format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"not a readable image: {path} ({e})") from None


def _upright(im):
    """The image as a viewer shows it, EXIF orientation applied (encrypted outputs carry no EXIF). Damaged
    EXIF makes Pillow raise all kinds of errors; the image is then taken as stored, as viewers do."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - struct.error, TypeError, ValueError, ... from a damaged EXIF block
        return im


def image_to_array(im) -> np.ndarray:
    """Pillow image -> uint8 array; grayscale stays 2-D (alpha dropped), everything else becomes RGB."""
    if im.mode in ("L", "1", "LA"):
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    if im.mode.startswith("I;16"):
        return (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
    if im.mode in ("I", "F"):
        raise InputError(f"unsupported image mode {im.mode!r} (use 8- or 16-bit grayscale or colour)")
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def encode_png(arr: np.ndarray, compress_level: int = 6) -> bytes:
    """Losslessly encode a uint8 array as PNG bytes (zlib level 1 is several times faster than the default 6,
    for files a few percent larger)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def save_image(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Save an array atomically; the format follows the suffix (PNG by default)."""
    import io

    from PIL import Image

    fmt = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"output must be .png, .bmp or .tif(f) (lossless): {path}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    atomic_write(path, buf.getvalue())
