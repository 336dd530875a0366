"""Known answers: files written by an earlier rdec must still decrypt, so the keyed transforms may get
faster but never different. The digests were produced by the first released kernels and checked
against the current ones when the stage-1 and stage-2 kernels were rewritten for speed."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdec.runtime.keys import KeyStream
from rdec.secure_jpeg.blocks import decrypt_blocks, encrypt_blocks
from rdec.secure_jpeg.dcperm import dc_stream, permute_dc

FIXTURES = Path(__file__).parent / "fixtures"
KEY, NONCE = bytes(range(32)), bytes(range(16))

STAGE1 = {  # (block, colour) -> SHA-256 of the scrambled padded image of photo_96x64.png
    (8, True): "188b3786e804847cedd7f05d1fd52b577936099601050489899d41b838a6873d",
    (8, False): "3d2a53545dc6fd98ac3a306c3af0ac8718c1fffb5700e7335388d2b64085d7b7",
    (16, True): "b835c74991b5c27abc99d1dc3d8da3062f60b3e2d9af9ca5611be793ed1ef360",
    (16, False): "e1481a091328b4fc9a63cea83ba226b40db541d6e9d405db2413babb6da238bc",
    (32, True): "b566e35d6c3d0d2b49bd77cc84bb9beba2392175eaa418e63fbd8fed5178a8b3",
    (32, False): "f2966cd8846b6ab79418fe88a7d1c9595c732da5c56bc84f358ad9fba58b2b8f",
}
# SHA-256 of the DC-permuted photo_96x64_q75_rst2.jpg (Pillow, quality 75, 4:2:0, restart every 2 MCUs)
STAGE2 = "f796ee2f50136036aaa506f3499166f20fae21187c90044d341267e58bec3638"


@pytest.mark.parametrize("block, colour", sorted(STAGE1))
def test_stage1_known_answer(block, colour):
    img = np.asarray(Image.open(FIXTURES / "photo_96x64.png").convert("RGB"))
    img = img if colour else np.ascontiguousarray(img[:, :, 1])
    enc = encrypt_blocks(img, KeyStream(KEY, NONCE, "ecea/stage1"), block)
    assert hashlib.sha256(enc.tobytes()).hexdigest() == STAGE1[block, colour]
    assert (decrypt_blocks(enc, KeyStream(KEY, NONCE, "ecea/stage1"), block, *img.shape[:2]) == img).all()


def test_stage2_known_answer():
    jpeg = (FIXTURES / "photo_96x64_q75_rst2.jpg").read_bytes()
    ece = permute_dc(jpeg, dc_stream(KEY, NONCE))
    assert hashlib.sha256(ece).hexdigest() == STAGE2
    assert permute_dc(ece, dc_stream(KEY, NONCE), inverse=True) == jpeg
