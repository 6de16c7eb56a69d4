"""Kraken2 side by side with genomix: a database of the same genomes (or only their training regions), and
per-read calls with reads/s.

There is no NCBI taxonomy here, so the database gets a hand-made one: a root (1) with one species node per
class (taxid TAXID_BASE + k). Each class's sequences are written with `>ID|kraken:taxid|TAXID` headers, which
`kraken2-build --add-to-library` turns into its `library/added/prelim_map_*.txt`, so no accession map is needed.
Everything returns None (after printing why) where kraken2 is not installed (`apt-get install kraken2`).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from genomix.io.genomes import Genome
from genomix.io.reading import read_inputs

TAXID_BASE = 2_000_000_000
ROOT_TAXID = 1
_RATE = re.compile(r"processed in ([\d.]+)s")


def available() -> bool:
    """Whether kraken2 and kraken2-build are on PATH; prints why not."""
    missing = [tool for tool in ("kraken2", "kraken2-build") if shutil.which(tool) is None]
    if missing:
        print(f"kraken2 side by side skipped: {', '.join(missing)} not installed (apt-get install kraken2)",
              file=sys.stderr)
    return not missing


def _dmp(*fields: str) -> str:
    return "\t|\t".join(fields) + "\t|\n"


def _write_taxonomy(classes: list[str], folder: Path) -> None:
    taxonomy = folder / "taxonomy"
    taxonomy.mkdir(parents=True, exist_ok=True)
    nodes = [_dmp(str(ROOT_TAXID), str(ROOT_TAXID), "no rank")]
    names = [_dmp(str(ROOT_TAXID), "root", "", "scientific name")]
    for k, label in enumerate(classes):
        nodes.append(_dmp(str(TAXID_BASE + k), str(ROOT_TAXID), "species"))
        names.append(_dmp(str(TAXID_BASE + k), label, "", "scientific name"))
    (taxonomy / "nodes.dmp").write_text("".join(nodes))
    (taxonomy / "names.dmp").write_text("".join(names))


def _pieces(path: Path, holdout_fraction: float | None) -> list[str]:
    """The genome's sequences: whole contigs, or only the training region of each (as `train --genome` samples
    windows from)."""
    if holdout_fraction is None:
        return [r.seq for r in read_inputs([str(path)])]
    genome = Genome(path)
    return [genome.fetch(contig, start, end) for contig, start, end in genome.regions("train", holdout_fraction)]


def build_database(genomes: dict[str, list[Path]], folder: Path, holdout_fraction: float | None = None,
                   threads: int = 2) -> Path | None:
    """A Kraken2 database in `folder` of each class's genomes: whole, or with `holdout_fraction` only the training
    region of every contig (`Genome.regions`), so that Kraken2 sees what genomix trained on. Regions are read by
    position, so those genomes must be plain FASTA or bgzip (`decompressed`)."""
    if not available():
        return None
    classes = sorted(genomes)
    _write_taxonomy(classes, folder)
    staging = folder / "staging"
    staging.mkdir(exist_ok=True)
    for k, label in enumerate(classes):
        fasta = staging / f"class{k}.fa"
        with open(fasta, "w") as out:
            for n, seq in enumerate(s for p in genomes[label] for s in _pieces(Path(p), holdout_fraction)):
                out.write(f">c{k}_{n}|kraken:taxid|{TAXID_BASE + k}\n{seq}\n")
        _run(["kraken2-build", "--add-to-library", str(fasta), "--db", str(folder), "--no-masking"], 1)
    _run(["kraken2-build", "--build", "--db", str(folder), "--threads", str(threads)], threads)
    shutil.rmtree(staging)
    return folder


def _run(command: list[str], threads: int) -> subprocess.CompletedProcess:
    """Run a Kraken2 command; OMP_NUM_THREADS is set to its `threads`, as Kraken2 refuses more than it allows."""
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done


def class_names(db: Path) -> dict[int, str]:
    """Taxid → class name, from the database's names.dmp (the root maps to "root")."""
    lines = (line.split("\t|\t") for line in (db / "taxonomy" / "names.dmp").read_text().splitlines())
    return {int(fields[0]): fields[1] for fields in lines}


def classify(db: Path | None, reads: Path, threads: int = 1) -> dict | None:
    """Kraken2's call for every read of a FASTA/FASTQ (plain or gzip): `calls` (read id → class name, "root" for
    a call only to the root, None when unclassified), `reads_per_s` end to end (database loading included, as
    genomix predict's rate includes loading the model) and `processing_reads_per_s` (Kraken2's own timing, None
    when too short for it)."""
    if db is None or not available():
        return None
    output = db / "calls.tsv"
    command = ["kraken2", "--db", str(db), "--threads", str(threads), "--output", str(output)]
    if _is_gzip(reads):
        command.append("--gzip-compressed")
    started = time.perf_counter()
    done = _run([*command, str(reads)], threads)
    seconds = time.perf_counter() - started
    names = class_names(db)
    calls = {}
    for line in output.read_text().splitlines():
        status, read_id, taxid = line.split("\t")[:3]
        calls[read_id] = names[int(taxid)] if status == "C" else None
    processing = _RATE.search(done.stderr)  # printed to the millisecond: 0 for a handful of reads
    processing_seconds = float(processing.group(1)) if processing else 0.0
    return {"calls": calls, "reads_per_s": len(calls) / seconds,
            "processing_reads_per_s": len(calls) / processing_seconds if processing_seconds else None}


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(2) == b"\x1f\x8b"


def decompressed(paths: list[Path], cache: Path) -> list[Path]:
    """Plain copies of gzip genomes in `cache` (regions are read by position, which plain gzip does not allow)."""
    cache.mkdir(parents=True, exist_ok=True)
    plain = []
    for path in paths:
        target = cache / Path(path).name.removesuffix(".gz")
        if not target.exists():
            target.write_bytes(gzip.decompress(Path(path).read_bytes()))
        plain.append(target)
    return plain
