"""Reference genomes: random access through pyfaidx, held-out regions, windows, and BED regions.

A genome is opened once and read by position, so a file of gigabases costs only its index in memory.
Plain FASTA is indexed on first use (`.fai` next to it, or in the user cache when its folder is read-only);
gzip must be bgzip, because ordinary gzip cannot be read at an offset. An index older than its genome (as
samtools judges it), or whose last contig is not where the genome has it, belongs to a file since replaced
and is rebuilt: read through, it would give other bases than the genome has.

Held-out regions: every contig keeps its last `holdout_fraction` for evaluation, the first half of that
for validation and the second half for test, so no validation or test window overlaps a training window.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyfaidx

from genomix.console import console
from genomix.errors import GenomixError
from genomix.io.reading import BOM, Record, check_name, normalise, split_input, text_lines

MAX_N_FRACTION = 0.5  # windows with more N than this carry no signal and are skipped
SAMPLE_TRIES = 100  # draws per window before giving up on a genome that is almost all N
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_REGION_ID = re.compile(r"(?P<contig>.+):(?P<start>\d+)-(?P<end>\d+)\((?P<strand>[+.-])\)")


def reverse_complement(seq: str) -> str:
    """The other strand of a normalised sequence."""
    return seq.translate(_COMPLEMENT)[::-1]


def _index_path(path: Path, suffix: str, plain: bool) -> Path:
    """Next to the genome when its folder is writable (samtools' convention), else in the user cache.

    A stale index (see `_is_stale`) is removed so that pyfaidx builds a new one; one that cannot be removed
    (a read-only folder) is left alone and the index is built in the user cache instead.
    """
    beside = path.with_name(path.name + suffix)
    if beside.exists() and not _is_stale(beside, path, plain):
        return beside
    if os.access(path.parent, os.W_OK) and _remove_stale(beside, path):
        return beside
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genomix" / "index"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GenomixError(f"{path}: cannot index it: its folder is read-only and the cache {cache} cannot be "
                           f"created ({err.strerror})") from None
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    cached = cache / f"{path.name}.{digest}{suffix}"
    if beside.exists():
        console.log(f"{beside} does not fit {path} (the genome was replaced) and cannot be replaced: "
                    f"indexing the genome in {cache}")
    if cached.exists() and _is_stale(cached, path, plain) and not _remove_stale(cached, path):
        raise GenomixError(f"{path}: its index {cached} is out of date and cannot be removed")
    return cached


def _remove_stale(index: Path, genome: Path) -> bool:
    """Remove a stale index so that a new one is built; False when it is there and cannot be removed."""
    if not index.exists():
        return True
    try:
        index.unlink()
    except OSError:
        return False
    console.log(f"{index} is older than {genome} or does not fit it (the genome was replaced): rebuilding it")
    return True


def _is_stale(index: Path, genome: Path, plain: bool) -> bool:
    """True when `index` was written for another file than `genome` is now.

    Older than the genome, as samtools judges it; and for the `.fai` of a plain FASTA, also when the last
    contig's header or end are not where the index has them (a replacement with an older time stamp).
    """
    if index.stat().st_mtime < genome.stat().st_mtime:
        return True
    if not plain or index.suffix != ".fai":
        return False
    try:
        rows = [line.split("\t") for line in index.read_text().splitlines() if line]
        name, length, offset, bases, width = max(rows, key=lambda row: int(row[2]))[:5]
        length, offset, bases, width = int(length), int(offset), int(bases), int(width)
    except (ValueError, IndexError, OSError):
        return True  # not a .fai pyfaidx could use either
    full_lines, rest = divmod(length, bases) if bases else (0, 0)
    end = offset + full_lines * width + rest - (width - bases if full_lines and not rest else 0)  # its last base
    size = genome.stat().st_size
    if not end <= size <= end + 65536:
        return True
    with open(genome, "rb") as file:
        start = max(offset - 4096, 0)
        file.seek(start)
        lines = file.read(offset - start).rstrip(b"\r\n").rsplit(b"\n", 1)
        file.seek(end)
        trailer = file.read()
    header_seen = len(lines) == 2 or start == 0  # else the header line is longer than what was read
    moved = header_seen and lines[-1].split()[:1] != [b">" + name.encode()]
    return moved or bool(trailer.strip())  # only blank lines may follow the last contig


def _compression(head: bytes) -> str | None:
    """'bgzf', 'gzip' (not BGZF: bgzip writes an extra field 'BC' in every block header) or None."""
    if head[:2] != b"\x1f\x8b":
        return None
    return "bgzf" if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC" else "gzip"


class Genome:
    """One indexed FASTA file: contig names and lengths, and normalised sequence by position."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise GenomixError(f"{path}: no such genome file")
        try:
            with open(self.path, "rb") as file:
                head = file.read(14)
        except OSError as err:
            raise GenomixError(f"{path}: cannot read ({err.strerror})") from None
        if head.startswith(BOM):  # read by byte offset, so the mark cannot simply be skipped as in other inputs
            raise GenomixError(f"{path}: starts with a UTF-8 byte-order mark, which indexing cannot skip; remove it "
                               f"(`sed -i '1s/^\\xEF\\xBB\\xBF//' {self.path.name}`)")
        compression = _compression(head)
        if compression == "gzip":
            name = self.path.name
            raise GenomixError(f"{path}: gzip but not bgzip, so it cannot be read by position; decompress it "
                               f"(`gunzip {name}`) or recompress it (`gunzip -c {name} | bgzip > bgz.{name}`)")
        plain = compression is None
        fai = _index_path(self.path, ".fai", plain)
        gzi = fai.with_suffix(".gzi") if plain else _index_path(self.path, ".gzi", plain)  # unused for plain FASTA
        try:
            self.fasta = pyfaidx.Fasta(str(self.path), indexname=str(fai), gzi_indexname=str(gzi), as_raw=True,
                                       sequence_always_upper=True, rebuild=False)
        except (pyfaidx.FastaIndexingError, pyfaidx.FetchError, OSError, ValueError) as err:
            raise GenomixError(f"{path}: cannot index this genome ({err})") from None
        if not self.fasta.keys():
            raise GenomixError(f"{path}: no sequences in this genome file")

    @cached_property
    def contigs(self) -> dict[str, int]:
        """Contig name → length, in file order."""
        return {name: len(record) for name, record in self.fasta.records.items()}

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Bases [start, end) of a contig, 0-based, normalised (IUPAC codes → N)."""
        try:
            raw = self.fasta[contig][start:end]
        except (pyfaidx.FetchError, KeyError, ValueError) as err:
            raise GenomixError(f"{self.path}: cannot read {contig}:{start}-{end} ({err})") from None
        return normalise(raw, str(self.path), f"{contig}:{start}-{end}")

    def regions(self, split: str, holdout_fraction: float) -> list[tuple[str, int, int]]:
        """(contig, start, end) of one split on every contig; see the module docstring."""
        regions = []
        for contig, length in self.contigs.items():
            held = round(length * holdout_fraction / 2)
            bounds = {"train": (0, length - 2 * held), "val": (length - 2 * held, length - held),
                      "test": (length - held, length)}[split]
            if bounds[1] > bounds[0]:
                regions.append((contig, *bounds))
        return regions


def n_fraction(seq: str) -> float:
    return seq.count("N") / len(seq)


@dataclass(frozen=True)
class GenomeSet:
    """Labelled genomes (`CLASS=genome.fa`, several per class allowed) read as windows of `window` bases."""

    genomes: tuple[tuple[str, Genome], ...]
    window: int
    holdout_fraction: float = 0.2

    @classmethod
    def open(cls, specs: Sequence[str], window: int, holdout_fraction: float = 0.2) -> GenomeSet:
        if window < 8:
            raise GenomixError("--genome-window must be at least 8")
        if not 0 < holdout_fraction < 1:
            raise GenomixError("--holdout-fraction must be in (0, 1)")
        genomes = []
        for spec in specs:
            label, path = split_input(spec)
            if label is None:
                raise GenomixError(f"--genome {spec}: give the class as CLASS=genome.fa")
            genomes.append((label, Genome(path)))
        if len({label for label, _ in genomes}) < 2:
            raise GenomixError("--genome: training needs genomes of at least two classes")
        return cls(tuple(genomes), window, holdout_fraction)

    @property
    def classes(self) -> list[str]:
        return sorted({label for label, _ in self.genomes})

    def sample(self, per_class: int, rng: np.random.Generator) -> list[Record]:
        """Random training windows, `per_class` for every class: genomes and contigs drawn by length."""
        records = []
        for label in self.classes:
            pool = [(g, *r) for lab, g in self.genomes if lab == label
                    for r in g.regions("train", self.holdout_fraction) if r[2] - r[1] >= self.window]
            if not pool:
                raise GenomixError(f"class '{label}': no contig has {self.window} bases outside the held-out part; "
                                   "lower --genome-window or --holdout-fraction")
            sizes = np.array([end - start - self.window + 1 for _, _, start, end in pool], dtype=np.float64)
            for _ in range(per_class):
                records.append(self._draw(label, pool, sizes / sizes.sum(), rng))
        return records

    def _draw(self, label, pool, weights, rng) -> Record:
        for _ in range(SAMPLE_TRIES):
            genome, contig, start, end = pool[rng.choice(len(pool), p=weights)]
            at = int(rng.integers(start, end - self.window + 1))
            seq = genome.fetch(contig, at, at + self.window)
            if n_fraction(seq) <= MAX_N_FRACTION:
                return Record(f"{contig}:{at}-{at + self.window}", seq, label)
        raise GenomixError(f"class '{label}': {SAMPLE_TRIES} random windows in a row were mostly N")

    def tiles(self, split: str, per_class: int | None = None) -> list[Record]:
        """Non-overlapping windows over the held-out regions of `split`, evenly thinned to `per_class`.

        A region shorter than the window gives one shorter sequence; mostly-N windows are skipped.
        """
        records = []
        for label in self.classes:
            spots = [(g, contig, at, min(at + self.window, end))
                     for lab, g in self.genomes if lab == label
                     for contig, start, end in g.regions(split, self.holdout_fraction)
                     for at in range(start, max(start + 1, end - self.window + 1), self.window)]
            if per_class is not None and len(spots) > per_class:
                spots = [spots[i] for i in np.linspace(0, len(spots) - 1, per_class).round().astype(int)]
            for genome, contig, at, stop in spots:
                seq = genome.fetch(contig, at, stop)
                if n_fraction(seq) <= MAX_N_FRACTION:
                    records.append(Record(f"{contig}:{at}-{stop}", seq, label))
        return records


def read_bed(spec: str, reference: Genome) -> Iterator[Record]:
    """Records for the regions of a BED file (`CLASS=regions.bed` labels them all; else the name column).

    Minus-strand regions are reverse-complemented; ids are `contig:start-end(strand)` as bedtools writes them.
    """
    label, path = split_input(spec)
    for number, line in enumerate(text_lines(path), 1):
        fields = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        if not fields or fields[0].startswith(("#", "track", "browser")):
            continue
        yield _bed_record(fields, label, f"{path}: line {number}", reference)


def _bed_record(fields: list[str], label: str | None, where: str, reference: Genome) -> Record:
    if len(fields) < 3:
        raise GenomixError(f"{where}: a BED line needs at least chrom, start and end")
    contig, strand = fields[0], fields[5] if len(fields) > 5 else "."
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise GenomixError(f"{where}: start and end must be integers, got {fields[1]!r} and {fields[2]!r}") from None
    if contig not in reference.contigs:
        raise GenomixError(f"{where}: contig '{contig}' is not in {reference.path}")
    if not 0 <= start < end <= reference.contigs[contig]:
        raise GenomixError(f"{where}: region {start}-{end} is empty or outside {contig} "
                           f"(length {reference.contigs[contig]})")
    if strand not in ("+", "-", "."):
        raise GenomixError(f"{where}: strand must be +, - or ., got {strand!r}")
    seq = reference.fetch(contig, start, end)
    if strand == "-":
        seq = reverse_complement(seq)
    name = check_name(fields[3], "name", where) if len(fields) > 3 and fields[3] not in ("", ".") else None
    return Record(region_id(contig, start, end, strand), seq, label or name)


def region_id(contig: str, start: int, end: int, strand: str) -> str:
    """The id of a BED region's record: `contig:start-end(strand)`, 0-based, end exclusive."""
    return f"{contig}:{start}-{end}({strand})"


def parse_region_id(record_id: str) -> tuple[str, int, int, str] | None:
    """(contig, start, end, strand) of a `region_id`; None for any other id."""
    found = _REGION_ID.fullmatch(record_id)
    return None if found is None else (found["contig"], int(found["start"]), int(found["end"]), found["strand"])


def read_regions(bed: Sequence[str], reference: str | None) -> Iterator[Record]:
    """Records of every `--bed` input, cut from the `--reference` genome (empty when there is no BED)."""
    if bed and reference is None:
        raise GenomixError("--bed needs --reference genome.fa, the genome its regions are cut from")
    if reference is not None and not bed:
        raise GenomixError("--reference is used with --bed only")
    if bed:
        genome = Genome(reference)
        for spec in bed:
            yield from read_bed(spec, genome)
