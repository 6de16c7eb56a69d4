"""`genomix variants`: the effect of each variant of a VCF on a model's prediction.

Every allele is scored on two windows cut from the reference, as `predict` scores a record (the model's
windows, strands and temperature, through `genomix.applying.scoring.Scorer`), and reported as the change in
each class's log-odds, alternative minus reference.

The windows rule, for a window of W bases (the model's max_len, or `allele_window`) and a record whose REF allele of
r bases starts at 0-based position p (alleles are taken as written, with their VCF anchor base; normalise
with `bcftools norm` first to left-align and trim them):
- reference window: the W reference bases starting (W - r) // 2 bases before p, so REF is in the middle;
- alternative window: the (W - a) // 2 reference bases before p, the a bases of ALT, then the reference
  after the REF allele, W bases in all: the same rule, centred on ALT. An SNV or MNV (a = r) changes only
  its bases; an insertion leaves fewer flanking bases on both sides, a deletion takes more of them from the
  reference;
- near a contig end a window is cut at the end (no padding, no shift, no wrap-around), so both windows are
  shorter there and are scored as `predict` scores a short record;
- an allele longer than W, symbolic alleles (<DEL>), breakends, `*` and a missing ALT are not scored: they are
  counted, by reason, in the summary.

The VCF is read by pysam (htslib) a chunk of records at a time and written in input order, so memory does not
grow with the number of records. Each record line is also checked by `_check_line`, because htslib reports
a broken line as "truncated file" or not at all (a QUAL of "abc" is read as 0), and never with its number.
"""

from __future__ import annotations

import errno
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import torch

from genomix.applying.scoring import BATCH_SIZE, CHUNK_BATCHES, Scorer, log_odds
from genomix.errors import GenomixError
from genomix.io.files import abandon, atomic_path, check_outputs, safe_name
from genomix.io.formats import is_stdout, is_stream, output_format
from genomix.io.genomes import Genome
from genomix.io.reading import text_lines
from genomix.io.writers import output_stream
from genomix.models.modelfile import TrainedModel, load_model
from genomix.sequences.tokens import encode

if TYPE_CHECKING:  # only named in annotations here; the functions that call pysam import it
    import pysam

BLOCK_BASES = 1 << 16  # reference bases read at a time: a sorted VCF's next windows are mostly in the same block
DNA = re.compile(r"[ACGTN]+")
LETTERS = re.compile(r"[A-Za-z]+")
NOT_ACGT = re.compile(r"[^ACGT]")
QUAL = re.compile(r"\.|[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)
OUTPUTS = ("tsv", "vcf", "vcf.gz")  # `genomix.io.formats`; stdout: tsv


@dataclass
class VariantSummary:
    """What `score_variants` did: records read, alleles scored, alleles not scored by reason."""

    records: int = 0
    scored: int = 0
    skipped: Counter = field(default_factory=Counter)

    def line(self) -> str:
        text = f"scored {self.scored:,} variants of {self.records:,} records"
        if self.skipped:
            reasons = ", ".join(f"{n:,} {reason}" for reason, n in self.skipped.most_common())
            text += f"; not scored: {reasons}"
        return text


def skip_reason(alt: str | None, ref: str, width: int) -> str | None:
    """Why an alternative allele is not scored, or None when it is."""
    if alt is None or alt == ".":
        return "without ALT"
    if alt.startswith("<"):
        return "symbolic (<...>)"
    if "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
        return "breakend"
    if alt == "*":
        return "spanning deletion (*)"
    if not DNA.fullmatch(alt.upper()):
        return "ALT not A/C/G/T/N"
    if max(len(alt), len(ref)) > width:
        return f"allele longer than the window ({width})"
    return None


def allele_windows(fetch: Callable[[int, int], str], length: int, start: int, ref: str, alt: str,
                   width: int) -> tuple[str, str]:
    """(reference window, alternative window) of an allele by the module's rule; `fetch(lo, hi)` gives the
    contig's bases [lo, hi), `length` is the contig's length, `start` REF's 0-based position."""
    left = (width - len(ref)) // 2
    ref_window = fetch(max(start - left, 0), min(start - left + width, length))
    alt_left = (width - len(alt)) // 2
    end = start + len(ref)
    alt_window = (fetch(max(start - alt_left, 0), start) + alt
                  + fetch(end, min(end + width - len(alt) - alt_left, length)))
    return ref_window, alt_window


class _Reference:
    """A genome read a block at a time; contig names checked, with a hint for a missing `chr` prefix."""

    def __init__(self, genome: Genome) -> None:
        self.genome, self.contig, self.lo, self.bases = genome, "", 0, ""

    def check_contig(self, contig: str, where: str) -> int:
        """The contig's length; a contig the reference lacks is an error that suggests the fix."""
        length = self.genome.contigs.get(contig)
        if length is not None:
            return length
        other = contig[3:] if contig.startswith("chr") else f"chr{contig}"
        names = self.genome.contigs
        hint = (f"; the reference calls it '{other}': rename the VCF's contigs (`bcftools annotate --rename-chrs`) "
                "or use a reference named as the calls were" if other in names else
                f"; it has {', '.join(list(names)[:5])}{', ...' if len(names) > 5 else ''}")
        raise GenomixError(f"{where}: contig '{contig}' is not in the reference {self.genome.path}{hint}")

    def fetch(self, contig: str, lo: int, hi: int) -> str:
        if contig != self.contig or lo < self.lo or hi > self.lo + len(self.bases):
            length = self.genome.contigs[contig]
            self.contig, self.lo = contig, lo
            self.bases = self.genome.fetch(contig, lo, min(max(hi, lo + BLOCK_BASES), length))
        return self.bases[lo - self.lo : hi - self.lo]


def _open_vcf(path: str | Path, region: str | None) -> pysam.VariantFile:
    """The VCF opened by pysam (htslib's messages silenced: errors are reported here, on one line)."""
    import pysam  # imported here (and in the two other functions that call it): other commands need not load it
    pysam.set_verbosity(0)
    if not Path(path).is_file():
        raise GenomixError(f"{path}: no such VCF file")
    gzipped = _is_gzip(path)
    try:
        vcf = pysam.VariantFile(str(path))
    except (ValueError, OSError, NotImplementedError) as err:
        if gzipped:  # htslib reads only BGZF among gzip files
            name = Path(path).name
            raise GenomixError(f"{path}: gzip but not bgzip, which htslib cannot read; recompress it "
                               f"(`gunzip -c {name} | bgzip > bgz.{name}`)") from None
        raise GenomixError(f"{path}: not a VCF file (it needs a '##fileformat=VCF...' and a '#CHROM' header "
                           f"line; {err})") from None
    if vcf.format != "VCF":
        raise GenomixError(f"{path}: a {vcf.format} file; genomix variants reads VCF (`bcftools view` converts)")
    if region is not None and vcf.compression != "BGZF":
        raise GenomixError(f"{path}: --region needs a bgzip-compressed VCF with a tabix index, and this one is "
                           f"plain text: `bgzip {Path(path).name} && tabix -p vcf {Path(path).name}.gz`")
    if region is not None and vcf.index is None:
        raise GenomixError(f"{path}: --region needs a tabix index ({Path(path).name}.tbi or .csi), and there is "
                           f"none: `tabix -p vcf {Path(path).name}`")
    return vcf


def _check_line(line: str, where: str, samples: int) -> None:
    """The columns htslib misreads without saying so, checked on the record's own text; a VCF with `samples`
    (in its #CHROM line) has their FORMAT and columns in every record (htslib reads a record without them, and
    cannot write it back)."""
    fields = line.rstrip("\r\n").split("\t", 8)
    if len(fields) < 8:
        raise GenomixError(f"{where}: {len(fields)} tab-separated columns, a VCF record needs at least 8 (CHROM POS "
                           "ID REF ALT QUAL FILTER INFO)" + ("; it is empty" if not line.strip() else ""))
    columns = line.rstrip("\r\n").count("\t") + 1
    if samples and columns != 9 + samples:
        raise GenomixError(f"{where}: {columns} tab-separated columns, and the header's #CHROM line has {9 + samples} "
                           f"(8, FORMAT and {samples} sample{'s' * (samples > 1)})")
    if not fields[1].isdigit() or int(fields[1]) < 1:
        raise GenomixError(f"{where}: POS '{fields[1]}' is not a position (a whole number from 1)")
    if not LETTERS.fullmatch(fields[3]):
        raise GenomixError(f"{where}: REF '{fields[3]}' is not a sequence of bases")
    if not QUAL.fullmatch(fields[5]):
        raise GenomixError(f"{where}: QUAL '{fields[5]}' is not a number or '.'")


def _is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as file:
        return file.read(2) == b"\x1f\x8b"


def _region_lines(path: str | Path, region: str) -> Iterator[str]:
    import pysam

    try:
        yield from pysam.TabixFile(str(path)).fetch(region=region)
    except ValueError as err:
        raise GenomixError(f"--region {region}: not a region of {path} (CHROM, CHROM:START-END; {err})") from None


class VcfRecords:
    """The records of a VCF (or of one `region` of an indexed one) in file order, each with where it is, for
    messages: the file and line, or the region and the record's number in it.

    Each line is checked (`_check_line`) before htslib's record of it is used; with `region`, the lines come
    from the tabix index too.
    """

    def __init__(self, path: str | Path, region: str | None = None) -> None:
        self.path, self.region = path, region
        self.vcf = _open_vcf(path, region)
        self.header = self.vcf.header

    def _records(self) -> Iterator[pysam.VariantRecord]:
        try:
            return iter(self.vcf) if self.region is None else self.vcf.fetch(region=self.region)
        except ValueError as err:
            raise GenomixError(f"--region {self.region}: not a region of {self.path} ({err})") from None

    def __iter__(self) -> Iterator[tuple[str, pysam.VariantRecord]]:
        records = self._records()
        numbered = enumerate(text_lines(str(self.path)), 1) if self.region is None else \
            ((None, line) for line in _region_lines(self.path, self.region))
        with self.vcf:
            for count, (number, line) in enumerate(numbered, 1):
                if number is not None and line.startswith("#"):
                    continue
                where = f"{self.path}: line {number}" if number is not None else \
                    f"{self.path} --region {self.region}: record {count}"
                _check_line(line, where, len(self.header.samples))
                try:
                    record = next(records)
                except (OSError, ValueError, StopIteration) as err:
                    raise GenomixError(f"{where}: not a VCF record htslib can read ({err})") from None
                yield where, record


def _describe(where: str, record: pysam.VariantRecord) -> str:
    return f"{where} ({record.chrom}:{record.pos}{'' if record.id is None else ' ' + record.id})"


@dataclass
class _Entry:
    """A record of a chunk: its window indices in the chunk, the reference one (None: nothing scored) and one
    per ALT allele (None: not scored)."""

    where: str
    record: pysam.VariantRecord
    ref_window: int | None
    alt_windows: list[int | None]


def _check_ref(record: pysam.VariantRecord, reference: _Reference, where: str) -> str | None:
    """None when REF is what the reference has there, else what the reference has (a mismatch)."""
    length = reference.check_contig(record.chrom, _describe(where, record))
    ref = NOT_ACGT.sub("N", record.ref.upper())
    if record.start + len(ref) > length:
        return f"the contig's end ({length:,} bases)"
    bases = reference.fetch(record.chrom, record.start, record.start + len(ref))
    return None if bases == ref else bases


def _prepare(where: str, record: pysam.VariantRecord, reference: _Reference, width: int, skip_mismatch: bool,
             summary: VariantSummary, windows: list[str]) -> _Entry:
    """The record's windows appended to `windows`, alleles that are not scored counted in `summary`."""
    alts = record.alts or (None,)
    found = _check_ref(record, reference, where)
    if found is not None:
        if not skip_mismatch:
            raise GenomixError(f"{_describe(where, record)}: REF {record.ref} but the reference has {found} there; "
                               "check that the calls were made on this reference, or give --skip-mismatch")
        summary.skipped["REF mismatch"] += len(alts)
        return _Entry(where, record, None, [None] * len(alts))
    length = reference.genome.contigs[record.chrom]

    def fetch(lo: int, hi: int) -> str:
        return reference.fetch(record.chrom, lo, hi)

    ref_window, alt_windows = None, []
    for alt in alts:
        reason = skip_reason(alt, record.ref, width)
        if reason is not None:
            summary.skipped[reason] += 1
            alt_windows.append(None)
            continue
        ref_bases, alt_bases = allele_windows(fetch, length, record.start, record.ref, alt.upper(), width)
        if ref_window is None:
            ref_window = len(windows)
            windows.append(ref_bases)
        alt_windows.append(len(windows))
        windows.append(alt_bases)
    summary.scored += sum(w is not None for w in alt_windows)
    return _Entry(where, record, ref_window, alt_windows)


def info_key(kind: str, class_name: str) -> str:
    """The INFO field and TSV column of one class: `ref_`, `alt_` or `log_odds_` + the class name, with characters
    that VCF keys cannot hold (all but ASCII letters, digits, '_' and '.') replaced by '_' (in both, so that a
    column has one name)."""
    return f"{kind}_{safe_name(class_name, keep='.', ascii_only=True)}"


@dataclass(frozen=True)
class _Scores:
    """A chunk's windows: (windows, classes) probabilities and log-odds of each class."""

    probs: np.ndarray
    log_odds: np.ndarray

    @classmethod
    def of(cls, log_probs: torch.Tensor) -> _Scores:
        odds = torch.stack([log_odds(log_probs, c) for c in range(log_probs.shape[1])], 1)
        return cls(log_probs.exp().numpy(), odds.numpy())

    def effects(self, entry: _Entry) -> list[np.ndarray | None]:
        """Per ALT allele, the change in each class's log-odds from the reference (None: not scored)."""
        return [None if w is None else self.log_odds[w] - self.log_odds[entry.ref_window] for w in entry.alt_windows]


class _TsvEffects:
    """One row per scored allele: chrom, pos, id, ref, alt, then ref_<class>, alt_<class> (probabilities) and
    log_odds_<class> (alternative minus reference) per class."""

    def __init__(self, out: IO, classes: Sequence[str]) -> None:
        self.out = out
        columns = [info_key(kind, c) for kind in ("ref", "alt", "log_odds") for c in classes]
        out.write("\t".join(["chrom", "pos", "id", "ref", "alt", *columns]) + "\n")

    def write(self, entry: _Entry, scores: _Scores) -> None:
        record = entry.record
        for alt, window, effect in zip(record.alts or (), entry.alt_windows, scores.effects(entry)):
            if window is None:
                continue
            numbers = (*scores.probs[entry.ref_window], *scores.probs[window], *effect)
            fields = [record.chrom, str(record.pos), record.id or ".", record.ref, alt, *(f"{x:.6g}" for x in numbers)]
            self.out.write("\t".join(fields) + "\n")


class _VcfEffects:
    """The input records, each with INFO ref_<class> (Number=1) and alt_<class>, log_odds_<class> (Number=A,
    '.' for an allele not scored); an indexed (.vcf.gz) output checks that the records are sorted."""

    def __init__(self, vcf: pysam.VariantFile, classes: Sequence[str], indexed: bool, output: str | Path) -> None:
        self.vcf, self.classes, self.indexed, self.output = vcf, classes, indexed, output
        self.contigs: set[str] = set()
        self.last: tuple[str, int] = ("", 0)

    def write(self, entry: _Entry, scores: _Scores) -> None:
        record = entry.record
        if self.indexed:
            self._check_sorted(record, entry.where)
        if entry.ref_window is not None:
            effects = scores.effects(entry)
            for c, name in enumerate(self.classes):
                record.info[info_key("ref", name)] = float(scores.probs[entry.ref_window, c])
                record.info[info_key("alt", name)] = tuple(None if w is None else float(scores.probs[w, c])
                                                           for w in entry.alt_windows)
                record.info[info_key("log_odds", name)] = tuple(None if e is None else float(e[c]) for e in effects)
        try:
            self.vcf.write(record)
        except OSError as err:
            if err.errno != errno.EINVAL:  # htslib's errno for a field the header lacks; others are the disk's
                raise
            header = self.vcf.header
            undeclared = [f"INFO/{k}" for k in record.info if k not in header.info]
            undeclared += [f"FORMAT/{k}" for k in record.format if k not in header.formats]
            undeclared += [f"FILTER/{k}" for k in record.filter if k not in header.filters]
            raise GenomixError(f"{_describe(entry.where, record)}: cannot be written to {self.output}: it uses "
                               f"{', '.join(undeclared) or 'something'} that the VCF's header does not declare; "
                               "declare it (`bcftools annotate -h extra.hdr`) or write a .tsv") from None

    def _check_sorted(self, record: pysam.VariantRecord, where: str) -> None:
        contig, pos = self.last
        if record.chrom != contig and record.chrom in self.contigs or record.chrom == contig and record.pos < pos:
            raise GenomixError(f"{_describe(where, record)}: the VCF is not sorted, and a .vcf.gz output gets a "
                               "tabix index, which needs sorted records; sort it first (`bcftools sort`) or write "
                               ".vcf or .tsv")
        self.contigs.add(record.chrom)
        self.last = (record.chrom, record.pos)


def _declare(header: pysam.VariantHeader, classes: Sequence[str], model: str, width: int,
             genome: Genome) -> None:
    """Declare the INFO fields, and what htslib needs declared to write every record: the reference's contigs
    and the reserved END field."""
    for kind, number, what in (("ref", "1", "probability of {} with the reference allele"),
                               ("alt", "A", "probability of {} with each alternative allele"),
                               ("log_odds", "A", "change in the log-odds of {}, alternative minus reference")):
        for name in classes:
            key = info_key(kind, name)
            if key in header.info:
                raise GenomixError(f"the VCF already has an INFO field {key} (scored before?); remove it "
                                   f"(`bcftools annotate -x INFO/{key}`) or write a .tsv")
            header.info.add(key, number, "Float", f"genomix variants {model}: {what.format(name)} ({width}-base "
                            "windows)")
    for contig, length in genome.contigs.items():
        if contig not in header.contigs:
            header.contigs.add(contig, length=length)
    if "END" not in header.info:  # htslib refers to END when it writes a record with a symbolic allele
        header.info.add("END", "1", "Integer", "End position of the variant described in this record")


@contextmanager
def _writer(output: str | Path, kind: str, records: VcfRecords, classes: Sequence[str],
            inputs: Sequence[str]) -> Iterator[_TsvEffects | _VcfEffects]:
    """The writer of `output`, written atomically: a .vcf.gz and its .tbi appear together, only on success."""
    if kind == "tsv":
        with output_stream(output, inputs) as out:
            yield _TsvEffects(out, classes)
        return
    import pysam

    with ExitStack() as stack:
        index = None
        if is_stream(output):  # a plain VCF into a pipe (bcftools reads stdin): written directly, as streams are
            target = "-" if is_stdout(output) else str(output)
        else:
            target = str(stack.enter_context(atomic_path(output, inputs)))
            index = stack.enter_context(atomic_path(f"{output}.tbi", inputs)) if kind == "vcf.gz" else None
        vcf = pysam.VariantFile(target, "wz" if index else "w", header=records.header)
        try:
            yield _VcfEffects(vcf, classes, index is not None, output)
        except BaseException:
            abandon(vcf.close)  # a failed close would replace the error that says why
            raise
        vcf.close()
        if index is not None:
            pysam.tabix_index(target, preset="vcf", index=str(index), force=True)


def score_variants(model: str | Path | TrainedModel, vcf: str | Path, reference: str | Path, output: str | Path,
                   allele_window: int | None = None, skip_mismatch: bool = False, region: str | None = None,
                   device: str = "auto", batch_size: int = BATCH_SIZE, rc: bool | None = None,
                   format: str | None = None, precision: str = "auto") -> VariantSummary:
    """Score every allele of `vcf` against `reference` (see the module docstring) and write the effects to
    `output` (.tsv or '-', .vcf, .vcf.gz with a .tbi; `format` whatever the suffix) in input order, a chunk of
    records at a time; returns what was scored and what was not.

    A REF that differs from the reference is an error naming the record, or with `skip_mismatch` an allele
    counted as not scored; `region` (CHROM or CHROM:START-END) reads one region of a tabix-indexed VCF.
    """
    kind = output_format(output, OUTPUTS, "tsv", chosen=format)
    if kind == "vcf.gz" and is_stream(output):
        raise GenomixError(f"-o {output}: a .vcf.gz output is indexed (a .tbi beside it): give a file, or "
                           "--format vcf for a stream")
    inputs = [str(vcf), str(reference)] + ([] if isinstance(model, TrainedModel) else [str(model)])
    check_outputs([("-o", output), ("-o", f"{output}.tbi" if kind == "vcf.gz" else None)], inputs)
    trained = model if isinstance(model, TrainedModel) else load_model(model)
    keys = [info_key("ref", c) for c in trained.classes]
    if len(set(keys)) < len(keys):
        raise GenomixError(f"classes {', '.join(trained.classes)} give the same INFO keys and columns "
                           f"({', '.join(keys)})")
    width = trained.max_len if allele_window is None else allele_window
    if width < 1:
        raise GenomixError(f"--allele-window must be at least 1, got {width}")
    genome = Genome(reference)
    records = VcfRecords(vcf, region)
    if kind != "tsv":
        name = trained.card.model if isinstance(model, TrainedModel) else Path(model).name
        _declare(records.header, trained.classes, name, width, genome)
    scorer = Scorer.of(trained, device, batch_size, rc, precision=precision)
    reference_blocks, summary = _Reference(genome), VariantSummary()
    chunk_bases = batch_size * CHUNK_BATCHES * trained.max_len  # as predict reads records: bounded memory
    with _writer(output, kind, records, trained.classes, inputs) as writer:
        chunk: list[_Entry] = []
        windows: list[str] = []
        bases = 0
        for where, record in records:
            summary.records += 1
            before = len(windows)
            chunk.append(_prepare(where, record, reference_blocks, width, skip_mismatch, summary, windows))
            bases += sum(len(w) for w in windows[before:])
            if bases >= chunk_bases:
                _write_chunk(writer, chunk, windows, scorer)
                chunk, windows, bases = [], [], 0
        _write_chunk(writer, chunk, windows, scorer)
    return summary


def _write_chunk(writer: _TsvEffects | _VcfEffects, chunk: list[_Entry], windows: list[str],
                 scorer: Scorer) -> None:
    """Score a chunk's windows in one pass of batches and write its records in order."""
    scores = _Scores.of(scorer.log_probs([encode(w) for w in windows]))
    for entry in chunk:
        writer.write(entry, scores)
