"""`genomix scan`: a model slid along every contig of a genome, written as a bedGraph track (and BED regions).

Windows of W bases start every S bases, the last one flush with the contig end, so that every base is read
(a contig shorter than W is one window). Each window owns the stretch between the midpoints of its centre and
its neighbours' centres, so the track's intervals tile a contig without overlap; windows that are mostly N
are skipped and leave a gap. A contig is fetched about BLOCK_BASES at a time and every output is streamed, so
memory does not grow with chromosome or genome size.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from genomix.applying.novelty import Inputs, Novelty, novelty_of
from genomix.applying.predicting import unknown_threshold
from genomix.applying.scoring import BATCH_SIZE, Caller, Scorer, check_threshold, decide
from genomix.console import console
from genomix.errors import GenomixError
from genomix.io.files import check_outputs, safe_name
from genomix.io.formats import check_format, check_seekable
from genomix.io.genomes import MAX_N_FRACTION, Genome
from genomix.io.multiqc import write_summary
from genomix.io.tracks import Track, open_track
from genomix.io.writers import Report, is_stdout, output_stream
from genomix.models.modelfile import TrainedModel, load_model
from genomix.sequences.tokens import N_TOKEN, encode

BLOCK_BASES = 1_000_000  # bases of window starts fetched at a time (at least a batch): bounds memory, amortises reads
MIN_WINDOW = 8
FORMATS = ("bedgraph", "bigwig")  # `genomix.io.formats`; -o is a bigWig by a .bw/.bigwig suffix, else a bedGraph


@dataclass(frozen=True)
class Layout:
    """Where the windows of one contig lie: starts 0, S, 2S, … and a last one flush with the contig end."""

    length: int
    width: int  # bases per window: W, or the contig length when that is shorter
    step: int
    count: int

    @classmethod
    def of(cls, length: int, window: int, step: int) -> Layout:
        if length <= window:
            return cls(length, length, step, 1)
        return cls(length, window, step, -(-(length - window) // step) + 1)

    def starts(self, ks: np.ndarray) -> np.ndarray:
        return np.minimum(ks * self.step, self.length - self.width)

    def owned(self, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) of the windows `ks`: from the midpoint with the previous centre to that with the next."""
        starts = self.starts(ks)
        lo = np.where(ks == 0, 0, (self.starts(ks - 1) + starts + self.width) // 2)
        hi = np.where(ks == self.count - 1, self.length, (starts + self.starts(ks + 1) + self.width) // 2)
        return lo, hi


@dataclass(frozen=True)
class Windows:
    """Consecutive windows of one contig: their starts, the intervals they own, class probabilities (rows of NaN
    for mostly-N windows, which were not scored), and whether each is unknown (`scan --unknown`)."""

    contig: str
    width: int
    starts: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    probs: np.ndarray
    novelty: np.ndarray | None = None

    @property
    def scored(self) -> np.ndarray:
        return ~np.isnan(self.probs[:, 0])


def scan_windows(scorer: Scorer, genome: Genome, window: int, step: int,
                 novelty: Novelty | None = None) -> Iterator[Windows]:
    """Score every window of every contig, a batch at a time, in genome order, with its novelty score where
    `novelty` is given.

    Windows longer than the model's max_len are scored as `genomix predict` scores a long record (its tiles'
    log-probabilities averaged), with the scorer's strands and temperature.
    """
    batch_size = scorer.batch_size
    per_block = batch_size * max(1, BLOCK_BASES // (step * batch_size))  # whole batches: one shape until the end
    for contig, length in genome.contigs.items():
        if length == 0:  # an empty record: nothing to read, nothing to write
            continue
        layout = Layout.of(length, window, step)
        for first in range(0, layout.count, per_block):
            ks = np.arange(first, min(first + per_block, layout.count))
            starts = layout.starts(ks)
            offset = int(starts[0])
            tokens = encode(genome.fetch(contig, offset, int(starts[-1]) + layout.width))
            n_before = np.zeros(len(tokens) + 1, dtype=np.int32)
            np.cumsum(tokens == N_TOKEN, out=n_before[1:])
            n_counts = n_before[starts - offset + layout.width] - n_before[starts - offset]
            for at in range(0, len(ks), batch_size):
                part = slice(at, at + batch_size)
                keep = n_counts[part] <= MAX_N_FRACTION * layout.width
                pieces = [tokens[s - offset : s - offset + layout.width] for s in starts[part][keep].tolist()]
                probs = np.full((len(keep), scorer.network.num_classes), np.nan)
                unusual = None if novelty is None else np.full(len(keep), np.nan)
                if pieces and novelty is None:
                    probs[keep] = scorer.log_probs(pieces).exp().numpy()
                elif pieces:
                    log_probs, _, features = scorer.records_with_features(pieces)
                    probs[keep] = log_probs.exp().numpy()
                    unusual[keep] = novelty.score(scorer.network, Inputs(log_probs.numpy(), features.numpy(), pieces,
                                                                                 scorer.rc))
                lo, hi = layout.owned(ks[part])
                yield Windows(contig, layout.width, starts[part], lo, hi, probs, unusual)


class RegionMerger:
    """BED lines of the regions where one class is called (`genomix.applying.scoring.decide`: the most probable, or
    its probability reaches the threshold): the full extents of those windows, merged where they overlap or
    touch, scored 1000 × the highest probability within."""

    def __init__(self, out: TextIO, column: int, name: str, threshold: float | None,
                 novelty_threshold: float | None = None) -> None:
        self.out, self.column, self.name, self.threshold = out, column, name, threshold
        self.novelty_threshold = novelty_threshold  # windows past it are unknown: never called
        self.open: list | None = None  # [contig, start, end, max probability] of the region being extended
        self.regions = 0

    def add(self, windows: Windows) -> None:
        probs = windows.probs[:, self.column]
        scored = windows.scored  # skipped windows break regions
        above = scored & (decide(np.nan_to_num(windows.probs), self.threshold, self.column) == self.column)
        if self.novelty_threshold is not None:
            above &= ~(windows.novelty > self.novelty_threshold)
        for start, p in zip(windows.starts[above].tolist(), probs[above].tolist()):
            region = self.open
            if region is not None and region[0] == windows.contig and start <= region[2]:
                region[2], region[3] = start + windows.width, max(region[3], p)
            else:
                self.close()
                self.open = [windows.contig, start, start + windows.width, p]

    def close(self) -> None:
        if self.open is not None:
            contig, start, end, p = self.open
            self.out.write(f"{contig}\t{start}\t{end}\t{self.name}\t{int(1000 * p)}\t.\n")
            self.regions += 1
            self.open = None


def class_output(output: Path, name: str) -> Path:
    """out.bedgraph → out.NAME.bedgraph, NAME made safe (`genomix.io.files.safe_name`)."""
    return output.with_name(f"{output.stem}.{safe_name(name)}{output.suffix}")


def _geometry(window: int | None, step: int | None, max_len: int) -> tuple[int, int]:
    window = max_len if window is None else window
    if window < MIN_WINDOW:
        raise GenomixError(f"--window must be at least {MIN_WINDOW} bases, got {window}")
    step = window // 2 if step is None else step
    if not 1 <= step <= window:
        raise GenomixError(f"--step must be between 1 and the window ({window}), got {step}")
    return window, step


def _choose_class(model: TrainedModel, class_name: str | None, all_classes: bool, bed: bool) -> str | None:
    """The class of the single track and of --bed-out: --class, else a binary model's positive class."""
    listed = ", ".join(model.classes)
    if class_name is not None and class_name not in model.classes:
        raise GenomixError(f"--class {class_name}: not a class of this model ({listed})")
    chosen = class_name or model.positive_class
    if chosen is None and not all_classes:
        raise GenomixError(f"this model has {len(model.classes)} classes ({listed}): choose one with --class NAME, "
                           "or write them all with --all-classes")
    if chosen is None and bed:
        raise GenomixError(f"--bed-out needs --class NAME on a model of {len(model.classes)} classes ({listed})")
    return chosen


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} bp"),
        TextColumn("{task.fields[speed]:,.0f} bp/s"), TimeRemainingColumn(), console=console, transient=True,
    )


def _check_outputs(output: str | Path, all_classes: bool, bed_out: str | Path | None, report: str | Path | None,
                   inputs: list[str], chosen: str | None) -> None:
    if all_classes and is_stdout(output):
        raise GenomixError("--all-classes writes one file per class: give -o FILE, not '-'")
    check_format(chosen, FORMATS)
    check_seekable(output, chosen=chosen)
    check_outputs([("-o", output), ("--bed-out", bed_out), ("--report", report)], inputs)


def _write_tracks(all_windows: Iterator[Windows], outs: dict[int, Track], merger: RegionMerger | None, name: str,
                  total: int, report: tuple[Report, Caller] | None = None) -> tuple[int, int, float]:
    """Stream the scored windows into the tracks (class column → stream) and the region merger, with a progress
    bar; return the windows scored and skipped, and the seconds taken."""
    start_time = time.perf_counter()
    done = scored = skipped = 0
    with _progress() as progress:
        task = progress.add_task(name, total=total, speed=0.0)
        for windows in all_windows:
            scored_rows = windows.scored
            for column, track in outs.items():
                track.add(windows.contig, windows.lo[scored_rows], windows.hi[scored_rows],
                          windows.probs[scored_rows, column])
            if merger is not None:
                merger.add(windows)
            if report is not None:
                report[0].add_all(*report[1].calls(windows.probs, windows.novelty), windows.hi - windows.lo)
            kept = int(windows.scored.sum())
            scored, skipped = scored + kept, skipped + len(windows.starts) - kept
            done += int(windows.hi[-1] - windows.lo[0])
            progress.update(task, description=windows.contig, completed=done,
                            speed=done / (time.perf_counter() - start_time))
    if merger is not None:
        merger.close()
    return scored, skipped, time.perf_counter() - start_time


def scan(
    model_path: str | Path,
    genome_path: str | Path,
    output: str | Path,
    window: int | None = None,
    step: int | None = None,
    class_name: str | None = None,
    all_classes: bool = False,
    bed_out: str | Path | None = None,
    threshold: float | None = None,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    rc: bool | None = None,
    report: str | Path | None = None,
    unknown: bool = False,
    format: str | None = None,
    precision: str = "auto",
) -> dict:
    """`genomix scan`: a bedGraph (bigWig: `format` or .bw) of p(class) along the genome, with `all_classes` one per
    class; with `bed_out` the regions where the class is called (the most probable, or p(class) ≥ `threshold`; with
    `unknown` no novel window); `report` the calls' summary. Returns bases, windows, skipped, seconds, regions..."""
    inputs = [str(model_path), str(genome_path)]
    _check_outputs(output, all_classes, bed_out, report, inputs, format)
    model = load_model(model_path)
    window, step = _geometry(window, step, model.max_len)
    chosen = _choose_class(model, class_name, all_classes, bed_out is not None)
    column = model.classes.index(chosen) if chosen else None  # the class of --bed-out, --threshold and the report
    check_threshold(threshold, model, target=column)
    tracks = _track_paths(model.classes, output, chosen, all_classes)
    novelty, limit = (novelty_of(model), unknown_threshold(model, True)) if unknown else (None, None)
    genome = Genome(genome_path)
    total = sum(genome.contigs.values())
    console.log(f"scanning {len(genome.contigs)} contigs ({total:,} bp) of {genome.path.name} with "
                f"{model.network.name} ({', '.join(model.classes)}): windows of {window:,} bp every {step:,} bp")
    with ExitStack() as stack:
        about = f"{Path(model_path).name} in windows of {window} bp every {step} bp over {genome.path.name}"
        outs = _open_tracks(tracks, model.classes, about, genome.contigs, inputs, stack, format)
        merger = None if bed_out is None else \
            RegionMerger(stack.enter_context(output_stream(bed_out, inputs)), column, chosen, threshold, limit)
        calls = _calls(model, report, threshold, column, limit)
        scorer = Scorer.of(model, device, batch_size, rc, precision=precision)
        windows = scan_windows(scorer, genome, window, step, novelty)
        scored, skipped, seconds = _write_tracks(windows, outs, merger, genome.path.name, total, calls)
        if calls is not None:
            write_summary(calls[0], report, stack.enter_context(output_stream(report, inputs)), "scan")
            console.log(calls[0].summary())
    summary = {"bases": total, "windows": scored, "skipped": skipped, "seconds": round(seconds, 3),
               "bases_per_s": round(total / seconds, 1), "regions": merger.regions if merger else None}
    _log_written(summary, [p for p in tracks.values() if not is_stdout(p)], merger, bed_out, threshold)
    return summary


def _open_tracks(tracks: dict, classes: list[str], about: str, contigs: dict[str, int], inputs: list[str],
                 stack: ExitStack, chosen: str | None) -> dict[int, Track]:
    """Class index → the track of its probabilities (`_track_paths`), in the format `chosen` or by suffix."""
    return {classes.index(name): open_track(path, f"genomix p({name})", f"p({name}) of {about}", contigs, inputs,
                                            stack, chosen) for name, path in tracks.items()}


def _calls(model: TrainedModel, report: str | Path | None, threshold: float | None, column: int | None,
           novelty_threshold: float | None) -> tuple[Report, Caller] | None:
    """Where a report is asked for: the report of the windows' calls (with `unknown` where windows may be called
    so), and how they are called."""
    if report is None:
        return None
    return (Report(model.classes, "windows", novelty_threshold is not None),
            Caller(model.classes, threshold, column, None, novelty_threshold))


def _track_paths(classes: list[str], output: str | Path, chosen: str | None, all_classes: bool) -> dict:
    """Class name → the track it is written to: `output`, or with `all_classes` one file per class."""
    if not all_classes:
        return {chosen: output}
    tracks = {name: class_output(Path(output), name) for name in classes}
    if len(set(map(str, tracks.values()))) < len(tracks):
        raise GenomixError(f"--all-classes: two classes of {', '.join(classes)} give the same file name")
    return tracks


def _log_written(summary: dict, written: list, merger: RegionMerger | None, bed_out: str | Path | None,
                 threshold: float | None) -> None:
    console.log(f"scanned {summary['bases']:,} bp in {summary['windows']:,} windows ({summary['skipped']:,} mostly N "
                f"skipped), {summary['seconds']:.1f} s: {summary['bases_per_s']:,.0f} bp/s")
    written = [str(p) for p in written]
    if merger is not None:
        rule = f"p({merger.name}) ≥ {threshold}" if threshold is not None else f"{merger.name} the most probable class"
        written.append(f"{merger.regions} regions with {rule} to {bed_out}")
    if written:
        console.log(f"wrote {', '.join(written)}")
