"""ECEA end to end: stage-1 pixel blocks -> standard JPEG encoder -> stage-2 DC permutation -> rdec header.

`encrypt`/`decrypt` work on arrays and bytes; `encrypt_jpeg`/`decrypt_to_jpeg` apply only the bitstream
stage to an existing baseline JPEG (from any encoder) and give it back bit for bit.
"""
from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from rdec.runtime.errors import FormatError, InputError
from rdec.runtime.keys import KeyStream, check_key, check_nonce, new_nonce

from . import container
from .blocks import decrypt_blocks, encrypt_blocks
from .dcperm import dc_stream, permute_dc
from .markers import parse, restore_metadata, strip_metadata

SUBSAMPLING = {"444": 0, "422": 1, "420": 2}
DEFAULT_BLOCK = 16
DEFAULT_QUALITY = 75
DEFAULT_SUBSAMPLING = "420"


def _check_options(quality, subsampling, restart_interval) -> None:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise InputError(f"quality must be an integer from 1 to 100, got {quality!r}")
    if str(subsampling) not in SUBSAMPLING:
        raise InputError(f"subsampling must be one of {', '.join(SUBSAMPLING)}, got {subsampling!r}")
    if (isinstance(restart_interval, bool) or not isinstance(restart_interval, (int, np.integer))
            or not 0 <= restart_interval <= 65535):
        raise InputError(f"restart interval must be 0..65535 MCUs, got {restart_interval!r}")


def jpeg_encode(image: np.ndarray, quality: int = DEFAULT_QUALITY, subsampling: str = DEFAULT_SUBSAMPLING,
                restart_interval: int = 0) -> bytes:
    """Baseline JPEG with the standard encoder, libjpeg-turbo, standard Huffman tables and the accurate DCT.

    `image` is uint8 H x W or H x W x 3. libjpeg-turbo is reached through simplejpeg (its TurboJPEG API,
    wheels for x86-64 and aarch64), which skips Pillow's per-call image copy and plugin machinery (1 ms of
    a 4.7 ms 1080p encode); Pillow's binding of the same library writes restart markers, which TurboJPEG
    does not offer."""
    _check_options(quality, subsampling, restart_interval)
    image = np.ascontiguousarray(image)
    gray = image.ndim == 2
    if restart_interval:
        kwargs = dict(quality=int(quality), subsampling=SUBSAMPLING[str(subsampling)], optimize=False,
                      progressive=False, restart_marker_blocks=int(restart_interval))
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", **kwargs)
        return buf.getvalue()
    return simplejpeg.encode_jpeg(image[:, :, None] if gray else image, quality=int(quality),
                                  colorspace="GRAY" if gray else "RGB",
                                  colorsubsampling="Gray" if gray else str(subsampling), fastdct=False)


def jpeg_decode(data: bytes) -> np.ndarray:
    """Decode a JPEG to uint8 HxW or HxWx3 as libjpeg-turbo does by default (accurate IDCT, smooth chroma
    upsampling), through simplejpeg, so the pixels are those a plain Pillow decode gives;
    FormatError if it cannot be decoded. What TurboJPEG cannot take (CMYK, unusual sampling factors, damaged
    data) goes through Pillow, which decodes it or gives the error."""
    try:
        space = simplejpeg.decode_jpeg_header(data)[2]
        if space in ("Gray", "YCbCr"):
            out = simplejpeg.decode_jpeg(data, colorspace="GRAY" if space == "Gray" else "RGB",
                                         fastdct=False, fastupsample=False)
            return out.reshape(out.shape[:2]) if space == "Gray" else out
    except ValueError:
        pass
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            out = np.asarray(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise FormatError(f"JPEG cannot be decoded: {e}") from None
    return out


def encrypt(image: np.ndarray, key: bytes, block: int = DEFAULT_BLOCK, quality: int = DEFAULT_QUALITY,
            subsampling: str = DEFAULT_SUBSAMPLING, restart_interval: int = 0, nonce: bytes | None = None) -> bytes:
    """Encrypt an RGB or grayscale uint8 image into an ECE JPEG (bytes) that any JPEG viewer opens."""
    key = check_key(key)
    nonce = new_nonce() if nonce is None else check_nonce(nonce)
    _check_options(quality, subsampling, restart_interval)
    # Every subkey and the stage-2 keystream are made before the JPEG encode, while the crypto code is warm in
    # cache: made after it, they took 0.1 ms more a 1080p frame (A/B in one process).
    stage1, stage2 = KeyStream(key, nonce, "ecea/stage1"), dc_stream(key, nonce)
    seal_keys = container.SealKeys(key, nonce)
    scrambled = encrypt_blocks(image, stage1, block, scratch=True)  # checks block
    stage2.prefetch(_dc_units(scrambled.shape, subsampling) + 16)  # an upper bound on the draws (see `below`)
    ec = jpeg_encode(scrambled, quality, subsampling, restart_interval)
    ece = permute_dc(ec, stage2)
    h, w = np.asarray(image).shape[:2]
    channels = 1 if scrambled.ndim == 2 else 3
    return container.seal(ece, container.Header(container.FLAG_STAGE1, block, channels, h, w, nonce), seal_keys)


def _dc_units(shape: tuple, subsampling: str) -> int:
    """The blocks (hence DC units) of the JPEG of a padded frame of this shape (sides multiples of 16)."""
    luma = shape[0] * shape[1] // 64
    return luma if len(shape) == 2 else luma + 2 * luma // {"444": 1, "422": 2, "420": 4}[str(subsampling)]


def _check_bytes(data, what: str) -> bytes:
    """A file's contents as bytes; InputError for anything else (a path, text, an array)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"{what} must be bytes (a file's contents), got {type(data).__name__}")
    return bytes(data)


def decrypt_to_jpeg(data: bytes, key: bytes, verify: bool = True) -> tuple[container.Header, bytes]:
    """Check the tag and restore the EC JPEG bit for bit (still stage-1 scrambled if the file has stage 1)."""
    data = _check_bytes(data, "encrypted data")
    key = check_key(key)
    header, ece = container.open_sealed(data, key, verify=verify)
    return header, restore_metadata(permute_dc(ece, dc_stream(key, header.nonce), inverse=True), header.metadata)


def decrypt(data: bytes, key: bytes, verify: bool = True) -> np.ndarray:
    """Decrypt an ECE JPEG (from `encrypt` or `encrypt_jpeg`) to the image (uint8 HxW or HxWx3)."""
    header, ec = decrypt_to_jpeg(data, key, verify=verify)
    pixels = jpeg_decode(ec)
    if not header.stage1:
        return pixels
    if (pixels.ndim == 2) != (header.channels == 1):
        raise FormatError("decoded image does not match the recorded channel count")
    return decrypt_blocks(pixels, KeyStream(key, header.nonce, "ecea/stage1"), header.block,
                          header.height, header.width, in_place=True)


def encrypt_jpeg(jpeg: bytes, key: bytes, nonce: bytes | None = None) -> bytes:
    """Stage 2 only: permute DC units of an existing baseline JPEG (no re-encoding, no quality loss). Its
    metadata (EXIF, thumbnails, comments, anything after EOI) is moved into the encrypted header."""
    jpeg = _check_bytes(jpeg, "jpeg")
    key = check_key(key)
    nonce = new_nonce() if nonce is None else check_nonce(nonce)
    parsed = parse(jpeg)
    stripped, metadata = strip_metadata(parsed)
    ece = permute_dc(stripped, dc_stream(key, nonce))
    frame = parsed.frame
    header = container.Header(0, 0, len(frame.components), frame.height, frame.width, nonce, metadata)
    return container.seal(ece, header, container.SealKeys(key, nonce))
