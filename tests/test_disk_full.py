"""Writers on a real full or read-only disk: a small tmpfs mounted for the test (where this process may mount,
as root on Linux; skipped elsewhere). Whatever a writer library raises (torch.save's and pyBigWig's RuntimeError,
safetensors' SafetensorError, pysam's and pyarrow's OSError), a command ends in one line naming the output and the
cause, exit code 2, and nothing at the output, not even a temporary file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TINY, check_user_error

from genomix.errors import GenomixError
from genomix.io.reading import read_records
from genomix.models.modelfile import load_model, save_model

FULL = "No space left on device"
VARIANTS_MODEL = Path(__file__).parent / "fixtures" / "v0_paramixer.gmx"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 1 MiB tmpfs, unmounted after the test."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path, room: int) -> None:
    """Take the free space of the disk that holds `folder` but `room` bytes, in a file of its own."""
    disk = os.statvfs(folder)
    left = disk.f_bavail * disk.f_frsize - room
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while left > 0:
            left -= os.write(fd, bytes(min(left, 65536)))
    finally:
        os.close(fd)


@pytest.fixture(params=[0, 8192], ids=["full", "nearly-full"])
def full_disk(disk: Path, request: pytest.FixtureRequest) -> Path:
    """The disk full from the start, or once the output's first pages are written."""
    fill(disk, request.param)
    return disk


def check_failed(proc, folder: Path, name: str) -> None:
    """One error line naming the output and the cause, after nothing but the log (no library's own complaint, no
    traceback), exit code 2; in the folder only what was there before."""
    check_user_error(proc, f"{folder / name}: cannot write ({FULL})", one_line=False)
    log = re.compile(r"\[\d\d:\d\d:\d\d\] | |$")  # a console log line, its continuation, a progress bar's end
    noise = [line for line in proc.stderr.decode().splitlines()[:-1] if not log.match(line)]
    assert noise == [], noise
    assert sorted(p.name for p in folder.iterdir()) == ["filler"], "no output and no temporary file"


def test_train_checkpoint_torch_save(genomix_main, disk, train_fa):
    """Once: a training costs seconds, and torch.save fails alike on a disk full from the start."""
    fill(disk, 8192)
    proc = genomix_main("train", train_fa, "-o", disk / "m.gmx", *TINY)
    check_failed(proc, disk, "m.gmx.ckpt")


def test_model_file_safetensors(full_disk, trained_model):
    with pytest.raises(GenomixError, match=f"^{full_disk / 'm.gmx'}: cannot write \\({FULL}\\)$"):
        save_model(load_model(trained_model), full_disk / "m.gmx")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("suffix", ["tsv", "parquet", "jsonl"])
def test_predict(genomix_main, full_disk, trained_model, test_fa, suffix):
    proc = genomix_main("predict", trained_model, test_fa, "-o", full_disk / f"p.{suffix}", "--device", "cpu")
    check_failed(proc, full_disk, f"p.{suffix}")


@pytest.mark.parametrize("suffix", ["npy", "parquet"])
def test_embed(genomix_main, full_disk, trained_model, test_fa, suffix):
    proc = genomix_main("embed", trained_model, test_fa, "-o", full_disk / f"e.{suffix}", "--device", "cpu")
    check_failed(proc, full_disk, f"e.{suffix}")


def test_scan_bigwig(genomix_main, full_disk, trained_model, test_fa):
    proc = genomix_main("scan", trained_model, "--reference", test_fa, "-o", full_disk / "t.bw", "--device", "cpu")
    check_failed(proc, full_disk, "t.bw")


def test_scan_bigwig_full_when_closed(genomix_main, disk, trained_model, test_fa, tmp_path):
    """libBigWig writes the index and the zoom levels, the file's end, when the file is closed, and reports a
    failure there only by printing it: the disk fills on the last page."""
    args = ["scan", trained_model, "--reference", test_fa, "--device", "cpu", "-o"]
    assert genomix_main(*args, tmp_path / "t.bw").returncode == 0
    fill(disk, (tmp_path / "t.bw").stat().st_size // 4096 * 4096 - 4096)
    check_failed(genomix_main(*args, disk / "t.bw"), disk, "t.bw")


@pytest.mark.parametrize("suffix", ["vcf", "vcf.gz"])
def test_variants_pysam(genomix_main, full_disk, tmp_path, test_fa, suffix):
    """Enough records that htslib fails while writing one (not only when closing the file): that OSError is the
    disk's, not a field missing from the header."""
    seq = next(r.seq for r in read_records(test_fa) if len(r.seq) >= 300)
    (tmp_path / "ref.fa").write_text(f">chrA\n{seq}\n")
    rows = "".join(f"chrA\t{p}\t.\t{seq[p - 1]}\t{alt}\t.\t.\t.\n" for p in range(10, 290) for alt in "ACGT"
                   if alt != seq[p - 1])
    (tmp_path / "calls.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + rows)
    proc = genomix_main("variants", VARIANTS_MODEL, "--vcf", tmp_path / "calls.vcf", "--reference",
                        tmp_path / "ref.fa", "-o", full_disk / f"e.{suffix}", "--device", "cpu")
    check_failed(proc, full_disk, f"e.{suffix}")


@pytest.fixture
def read_only_disk(disk: Path) -> Path:
    (disk / "old.tsv").write_text("kept\n")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    return disk


@pytest.mark.parametrize("command", ["train", "predict", "scan"])
def test_read_only_disk(genomix_main, read_only_disk, trained_model, train_fa, test_fa, command):
    args = {"train": ["train", train_fa, "-o", read_only_disk / "m.gmx", *TINY],
            "predict": ["predict", trained_model, test_fa, "-o", read_only_disk / "old.tsv"],
            "scan": ["scan", trained_model, "--reference", test_fa, "-o", read_only_disk / "t.bw"]}[command]
    proc = genomix_main(*args)
    check_user_error(proc, f"folder {read_only_disk} is on a read-only file system")
    assert (read_only_disk / "old.tsv").read_text() == "kept\n"
