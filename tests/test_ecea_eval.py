"""`rdec jpeg eval` on two small committed images: tables, report and figure are written and sane."""
import csv
import shutil
from pathlib import Path

from rdec.runtime.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_eval_writes_report(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "photo_192x128.png", data / "a.png")
    shutil.copy(FIXTURES / "photo_96x64.png", data / "b.png")
    out = tmp_path / "report"
    assert main(["jpeg", "eval", "--data", str(data), "--out", str(out), "--blocks", "8", "16"]) == 0
    for name in ("report.md", "metrics.csv", "files.csv", "figure.png"):
        assert (out / name).stat().st_size > 0
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    # C, then EC and ECE for each block size; R, G, B and avg per scheme
    assert len(rows) == 2 * (1 + 2 * 2) * 4
    ece = [r for r in rows if r["scheme"] == "ECE" and r["channel"] == "avg"]
    c = [r for r in rows if r["scheme"] == "C" and r["channel"] == "avg"]
    assert all(float(r["entropy"]) > float(x["entropy"]) for r, x in zip(ece, c))
    assert all(float(r["npcr_fresh"]) > 90 for r in ece)
    files = list(csv.DictReader((out / "files.csv").read_text().splitlines()))
    assert all(r["wrong_key_rejected"] == "True" for r in files if r["scheme"] == "ECE")
    assert all(float(r["psnr_wrong_key"]) < 15 for r in files if r["scheme"] == "ECE")
    assert "| ECE | 16 |" in (out / "report.md").read_text()


def test_eval_bad_data_folder(tmp_path, capsys):
    assert main(["jpeg", "eval", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
    assert "rdec: error:" in capsys.readouterr().err
