"""The `rdec` command as a user runs it: help everywhere, one-line errors, non-zero exits, nothing written."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rdec.runtime.cli import build_parser, main
from rdec.runtime.fileio import load_image

FIXTURES = Path(__file__).parent / "fixtures"
PHOTO = FIXTURES / "photo_96x64.png"


def rdec(*args, cwd=None):
    """Run the installed CLI in a subprocess (the way users do)."""
    return subprocess.run([sys.executable, "-m", "rdec.runtime.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from subcommands(sub, prefix + (name,))


def test_help_on_every_subcommand(capsys):
    commands = list(subcommands(build_parser()))
    assert ("jpeg", "encrypt") in commands and ("keygen",) in commands
    for cmd in commands:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        assert "usage: rdec " + " ".join(cmd) in capsys.readouterr().out


def test_keygen_encrypt_decrypt(tmp_path):
    key = tmp_path / "k.key"
    r = rdec("keygen", key)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    secret = key.read_text().split()[1]
    assert secret not in r.stdout + r.stderr  # the key is never printed
    enc, dec = tmp_path / "e.jpg", tmp_path / "d.png"
    r = rdec("jpeg", "encrypt", PHOTO, enc, "--key", key, "--block", "8", "--quality", "90", "--subsampling", "444")
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    r = rdec("jpeg", "decrypt", enc, dec, "--key", key)
    assert r.returncode == 0, r.stderr
    orig, out = load_image(PHOTO), load_image(dec)
    assert out.shape == orig.shape
    assert 10 * np.log10(255**2 / np.mean((orig.astype(float) - out) ** 2)) > 28


def test_dc_only_restores_original_jpeg(tmp_path):
    from PIL import Image

    src = tmp_path / "in.jpg"
    Image.open(PHOTO).save(src, quality=80)
    key = tmp_path / "k.key"
    main(["keygen", str(key)])
    assert main(["jpeg", "encrypt", str(src), str(tmp_path / "e.jpg"), "--key", str(key), "--dc-only"]) == 0
    assert main(["jpeg", "decrypt", str(tmp_path / "e.jpg"), str(tmp_path / "back.jpg"), "--key", str(key)]) == 0
    assert (tmp_path / "back.jpg").read_bytes() == src.read_bytes()


def expect_error(capsys, args, pattern, tmp_path):
    before = set(os.listdir(tmp_path))
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("rdec: error: ") and pattern in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert set(os.listdir(tmp_path)) == before  # nothing written


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    key, other = tmp_path / "k.key", tmp_path / "o.key"
    main(["keygen", str(key)])
    main(["keygen", str(other)])
    enc = tmp_path / "e.jpg"
    main(["jpeg", "encrypt", str(PHOTO), str(enc), "--key", str(key)])
    capsys.readouterr()
    out, ej = tmp_path / "out.png", tmp_path / "out.jpg"
    expect_error(capsys, ["jpeg", "encrypt", tmp_path / "missing.png", ej, "--key", key], "no such file", tmp_path)
    expect_error(capsys, ["jpeg", "encrypt", PHOTO, ej, "--key", tmp_path / "nokey"], "key file", tmp_path)
    (tmp_path / "text.png").write_text("not an image")
    expect_error(capsys, ["jpeg", "encrypt", tmp_path / "text.png", ej, "--key", key], "not a readable image", tmp_path)
    expect_error(capsys, ["jpeg", "decrypt", enc, out, "--key", other], "wrong key", tmp_path)
    data = bytearray(enc.read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "bad.jpg").write_bytes(bytes(data))
    expect_error(capsys, ["jpeg", "decrypt", tmp_path / "bad.jpg", out, "--key", key], "modified", tmp_path)
    (tmp_path / "cut.jpg").write_bytes(enc.read_bytes()[:300])
    expect_error(capsys, ["jpeg", "decrypt", tmp_path / "cut.jpg", out, "--key", key], "truncated", tmp_path)
    expect_error(capsys, ["jpeg", "decrypt", PHOTO, out, "--key", key], "not a JPEG", tmp_path)
    expect_error(capsys, ["jpeg", "encrypt", PHOTO, ej, "--key", key, "--quality", "0"], "quality", tmp_path)
    expect_error(capsys, ["jpeg", "decrypt", enc, tmp_path / "out.gif", "--key", key], "lossless", tmp_path)
    expect_error(capsys, ["jpeg", "decrypt", enc, tmp_path / "back.jpg", "--key", key], "stage 1", tmp_path)
    expect_error(capsys, ["jpeg", "encrypt", PHOTO, tmp_path / "nodir" / "x.jpg", "--key", key], "folder", tmp_path)
    expect_error(capsys, ["jpeg", "encrypt", PHOTO, ej, "--key", key, "--dc-only"], "not a JPEG", tmp_path)
    expect_error(capsys, ["jpeg", "encrypt", PHOTO, out, "--key", key], "must end in .jpg", tmp_path)
    expect_error(capsys, ["jpeg", "encrypt", enc, ej, "--key", key, "--dc-only", "--quality", "10"], "cannot apply",
                 tmp_path)
    (tmp_path / "raw.key").write_bytes(bytes(32))  # 32 bytes, but not a key file: refused, never used as a key
    expect_error(capsys, ["jpeg", "encrypt", PHOTO, ej, "--key", tmp_path / "raw.key"], "not an rdec key file",
                 tmp_path)
    (tmp_path / "adir.jpg").mkdir()
    expect_error(capsys, ["jpeg", "encrypt", PHOTO, tmp_path / "adir.jpg", "--key", key], "cannot write", tmp_path)


def test_existing_output_survives_a_failed_run(tmp_path, capsys):
    key = tmp_path / "k.key"
    main(["keygen", str(key)])
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert main(["jpeg", "decrypt", str(PHOTO), str(out), "--key", str(key)]) == 1
    assert out.read_bytes() == b"precious"


def test_output_that_is_the_input_is_refused(tmp_path, capsys):
    key = tmp_path / "k.key"
    main(["keygen", str(key)])
    photo = tmp_path / "photo.png"
    photo.write_bytes(PHOTO.read_bytes())
    capsys.readouterr()
    expect_error(capsys, ["jpeg", "decrypt", photo, photo, "--key", key], "same file", tmp_path)
    jpg = tmp_path / "p.jpg"
    assert main(["jpeg", "encrypt", str(photo), str(jpg), "--key", str(key)]) == 0
    before = jpg.read_bytes()
    (tmp_path / "alias.jpg").symlink_to(jpg)
    capsys.readouterr()
    expect_error(capsys, ["jpeg", "encrypt", jpg, tmp_path / "alias.jpg", "--key", key, "--dc-only"], "same file",
                 tmp_path)
    assert jpg.read_bytes() == before and photo.read_bytes() == PHOTO.read_bytes()


def test_key_file_readable_by_others_gives_a_one_line_warning(tmp_path, capsys):
    key = tmp_path / "k.key"
    main(["keygen", str(key)])
    os.chmod(key, 0o644)
    capsys.readouterr()
    assert main(["jpeg", "encrypt", str(PHOTO), str(tmp_path / "e.jpg"), "--key", str(key)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rdec: warning: key file") and "chmod 600" in err


def test_interrupts_from_inside_compiled_code_are_recognized():
    from rdec.runtime.interrupts import StopSignals, is_interrupt

    def chained():  # what numba gives when Ctrl-C lands in a compiled function: SystemErrors caused by it
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as e:
                raise SystemError("returned a result with an exception set") from e
        except SystemError as e:
            raise SystemError("returned a result with an exception set") from e

    with pytest.raises(SystemError) as info:
        chained()
    assert is_interrupt(info.value) and not is_interrupt(ValueError("x"))
    stop = StopSignals()
    stop.requested = True  # the signal was swallowed where it landed; whatever error follows is the interrupt
    assert is_interrupt(RuntimeError("no compiled object yet"), stop)


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["jpeg", "encrypt", "a", "b", "--key", "k", "--block", "12"])
    assert e.value.code == 2


def test_runtime_never_imports_torch(tmp_path):
    """Importing every runtime and secure_jpeg module and running an ECEA job leaves torch unloaded."""
    code = f"""
import importlib, pkgutil, sys
import rdec.runtime, rdec.secure_jpeg
for pkg in (rdec.runtime, rdec.secure_jpeg):
    for m in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(pkg.__name__ + '.' + m.name)
from rdec.runtime.cli import main
assert main(['keygen', r'{tmp_path / "k.key"}']) == 0
assert main(['jpeg', 'encrypt', r'{PHOTO}', r'{tmp_path / "e.jpg"}', '--key', r'{tmp_path / "k.key"}']) == 0
assert 'torch' not in sys.modules, 'torch was imported'
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_ci_runs_the_readme_test_command():
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    test_lines = [line for line in readme.splitlines() if "python -m pytest" in line]
    assert test_lines and all(line in ci.splitlines() for line in test_lines)
