"""Camera-stream encryption from a folder and a video file, Ctrl-C, and the decrypting counterpart."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rdec.runtime.errors import InputError, RdecError, WrongKeyError
from rdec.runtime.fileio import load_image
from rdec.secure_jpeg import ecea
from rdec.secure_jpeg.stream import decrypt_folder, encrypt_stream

FIXTURES = Path(__file__).parent / "fixtures"
KEY = bytes(range(32))


def frames_folder(tmp_path, n):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(n):
        shutil.copy(FIXTURES / "photo_96x64.png", src / f"img_{i:03d}.png")
    return src


def test_folder_stream_round_trip(tmp_path):
    src = frames_folder(tmp_path, 3)
    out = tmp_path / "enc"
    assert encrypt_stream(str(src), out, KEY, block=8) == 3
    names = sorted(p.name for p in out.iterdir())
    assert names == ["frame_000000.jpg", "frame_000001.jpg", "frame_000002.jpg"]
    nonces = {ecea.container.read_header((out / n).read_bytes()).nonce for n in names}
    assert len(nonces) == 3  # a fresh nonce per frame
    # a second run continues the sequence instead of overwriting
    assert encrypt_stream(str(src), out, KEY, max_frames=2) == 2
    assert (out / "frame_000004.jpg").exists() and not (out / "frame_000005.jpg").exists()
    dec = tmp_path / "dec"
    assert decrypt_folder(out, dec, KEY) == 5
    orig = load_image(FIXTURES / "photo_96x64.png")
    for p in sorted(dec.iterdir()):
        img = load_image(p)
        assert img.shape == orig.shape
        assert 10 * np.log10(255**2 / np.mean((img.astype(float) - orig) ** 2)) > 24


def test_decrypt_folder_reports_bad_frames_and_goes_on(tmp_path):
    src = frames_folder(tmp_path, 2)
    out = tmp_path / "enc"
    encrypt_stream(str(src), out, KEY)
    (out / "frame_000001.jpg").write_bytes((out / "frame_000001.jpg").read_bytes()[:-20])
    with pytest.raises(RdecError, match="1 of 2 frames failed"):
        decrypt_folder(out, tmp_path / "dec", KEY)
    assert (tmp_path / "dec" / "frame_000000.png").exists()
    with pytest.raises(WrongKeyError, match="stopped at the first frame"):  # nothing written, no folder
        decrypt_folder(out, tmp_path / "dec2", bytes(32))
    assert not (tmp_path / "dec2").exists()


def test_concurrent_streams_never_overwrite_each_others_frames(tmp_path, monkeypatch):
    """Another stream took frame_000000 after this one chose its first number: it takes the next free one."""
    from rdec.secure_jpeg import stream

    src = frames_folder(tmp_path, 2)
    out = tmp_path / "enc"
    out.mkdir()
    (out / "frame_000000.jpg").write_bytes(b"another stream's frame")
    monkeypatch.setattr(stream, "next_sequence", lambda _out: 0)
    assert encrypt_stream(str(src), out, KEY) == 2
    assert (out / "frame_000000.jpg").read_bytes() == b"another stream's frame"
    assert sorted(p.name for p in out.iterdir()) == ["frame_000000.jpg", "frame_000001.jpg", "frame_000002.jpg"]


def test_unreadable_video_is_an_error_not_an_empty_success(tmp_path):
    pytest.importorskip("cv2")
    bad = tmp_path / "clip.avi"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(InputError, match="cannot open|no frame could be read"):
        encrypt_stream(str(bad), tmp_path / "o", KEY)
    assert not (tmp_path / "o").exists()


def test_progress_in_a_log_is_one_line_per_report():
    import io

    from rdec.secure_jpeg.stream import Progress

    log = io.StringIO()  # not a terminal: no carriage returns
    p = Progress("encrypting", log, log_every=0.0)
    p.tick(0.01)
    p.tick(0.01)
    p.close("done")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert lines[0].startswith("encrypting: 1 frame,") and lines[-1].startswith("encrypting: 2 frames,")


def test_unreadable_image_in_a_folder_is_reported_and_the_rest_go_on(tmp_path):
    src = frames_folder(tmp_path, 3)
    (src / sorted(os.listdir(src))[1]).write_bytes(b"")
    with pytest.raises(RdecError, match="1 of 3 frames failed"):
        encrypt_stream(str(src), tmp_path / "enc", KEY)
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["frame_000000.jpg", "frame_000001.jpg"]


def test_video_file_source(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="video files need OpenCV (camera extra)")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    img = load_image(FIXTURES / "photo_96x64.png")
    for i in range(4):
        writer.write(np.roll(img, 5 * i, axis=1)[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "enc"
    assert encrypt_stream(str(video), out, KEY) == 4
    assert ecea.decrypt((out / "frame_000003.jpg").read_bytes(), KEY).shape == (64, 96, 3)


def test_bad_sources(tmp_path):
    with pytest.raises(InputError):
        encrypt_stream(str(tmp_path / "nothing"), tmp_path / "o", KEY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        encrypt_stream(str(tmp_path / "empty"), tmp_path / "o", KEY)
    with pytest.raises(InputError):
        encrypt_stream(str(tmp_path), tmp_path / "o", KEY, quality=500)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_with_whole_frames(tmp_path, sig):
    src = frames_folder(tmp_path, 40)
    out = tmp_path / "enc"
    key = tmp_path / "k.key"
    from rdec.runtime.keys import write_key_file
    write_key_file(key, KEY)
    proc = subprocess.Popen([sys.executable, "-m", "rdec.runtime.cli", "jpeg", "stream", "--source", str(src),
                             "--out", str(out), "--key", str(key), "--fps", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and len(list(out.glob("frame_*.jpg"))) >= 2):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # a script can tell an interrupted stream from a finished one
    assert "Ctrl-C" in err and "fps" in err
    written = sorted(out.iterdir())
    assert 2 <= len(written) < 40
    assert all(p.name.startswith("frame_") and p.suffix == ".jpg" for p in written)  # no temp files left
    for p in written:
        ecea.decrypt(p.read_bytes(), KEY)
