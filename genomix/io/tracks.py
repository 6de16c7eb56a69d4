"""Genome tracks chosen by the output's suffix: bigWig (`.bw`, `.bigwig`, through pyBigWig), else bedGraph text.

`scan` writes its windows' probabilities and `explain` its per-base attributions through these: intervals in
genome order, each with one value.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

import numpy as np

from genomix.io.files import abandon, atomic_path, printed_by
from genomix.io.formats import format_of
from genomix.io.writers import output_stream


class BedGraphTrack:
    """A bedGraph track, streamed as text; values to 6 decimals."""

    def __init__(self, out: TextIO, name: str, description: str) -> None:
        self.out = out
        out.write(f'track type=bedGraph name="{name}" description="{description}"\n')

    def add(self, contig: str, lo: np.ndarray, hi: np.ndarray, values: np.ndarray) -> None:
        rows = zip(lo.tolist(), hi.tolist(), values.tolist())
        self.out.write("".join(f"{contig}\t{a}\t{b}\t{v:.6f}\n" for a, b, v in rows))


class BigWigTrack:
    """A bigWig track through pyBigWig: the contig sizes as its header, entries added in genome order."""

    def __init__(self, path: Path, contigs: Mapping[str, int]) -> None:
        import pyBigWig  # imported here: only bigWig outputs need it

        self.file = pyBigWig.open(str(path), "w")
        try:
            self.file.addHeader([(c, n) for c, n in contigs.items() if n > 0])
        except BaseException:
            abandon(self.file.close)
            raise

    def add(self, contig: str, lo: np.ndarray, hi: np.ndarray, values: np.ndarray) -> None:
        if len(lo):
            self.file.addEntries([contig] * len(lo), lo.tolist(), ends=hi.tolist(), values=values.tolist())

    def finish(self, failed: type[BaseException] | None, *_: object) -> None:
        """Close the file as the command's stack unwinds: complete, or after a failure `abandon`ed. libBigWig
        writes the index and the zoom levels here, and reports a failure (a full disk) only by printing it: that
        is an error, not a truncated file left to look complete."""
        if failed is not None:
            abandon(self.file.close)
            return
        printed = printed_by(self.file.close)
        if "[bwClose]" in printed:
            raise RuntimeError(printed.strip())  # `atomic_path` finds the cause
        sys.stderr.write(printed)


Track = BedGraphTrack | BigWigTrack


def open_track(path: str | Path, name: str, description: str, contigs: Mapping[str, int], inputs: Sequence[str],
               stack: ExitStack, chosen: str | None = None) -> Track:
    """bigWig where `chosen` (--format) or else the suffix says so (written to a temporary file, renamed when the
    command succeeds), else bedGraph ('-': stdout)."""
    if (chosen or format_of(path)) == "bigwig":
        track = BigWigTrack(stack.enter_context(atomic_path(path, inputs)), contigs)
        stack.push(track.finish)  # runs before the rename: the file is complete when it appears
        return track
    return BedGraphTrack(stack.enter_context(output_stream(path, inputs)), name, description.replace('"', "'"))
