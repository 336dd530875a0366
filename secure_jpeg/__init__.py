"""ECEA: JPEG-compatible encryption (pixel blocks, standard JPEG, keyed DC permutation in the bitstream).

The API on arrays and bytes: `encrypt(image, key, ...)` -> ECE JPEG bytes, `decrypt(data, key)` -> image,
`encrypt_jpeg(jpeg, key)` / `decrypt_to_jpeg(data, key)` for the bitstream stage alone (see `ecea`).
They load on first use, so the `rdec` command starts without compiling anything.
"""
_API = ("encrypt", "decrypt", "encrypt_jpeg", "decrypt_to_jpeg", "jpeg_encode", "jpeg_decode")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from . import ecea

        return getattr(ecea, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
