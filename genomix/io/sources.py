"""Where a command's records come from: sequence files (with an optional label table), BED regions of a
reference genome, or labelled genomes read as windows.

The CLI builds one `RecordSource` from its arguments; the combinations are checked once, here, and every
command reads its records through it. A new way of labelling records (a regex on headers, a GFF feature
type) is a field and a step in `RecordSource._read`, and a flag in the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from genomix.errors import GenomixError
from genomix.io.genomes import GenomeSet, read_regions
from genomix.io.reading import LabelTable, Record, read_inputs


@dataclass(frozen=True)
class RecordSource:
    """Sequence files and BED regions (`records`), validation files (`validation_records`), or `CLASS=genome`
    specs (`genome_set`). `labels` is an id → label table that covers the files and the validation files."""

    inputs: Sequence[str] = ()
    labels: str | None = None
    bed: Sequence[str] = ()
    reference: str | None = None
    genomes: Sequence[str] = ()
    val_inputs: Sequence[str] = ()
    _table: LabelTable | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("inputs", "bed", "genomes", "val_inputs"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name) or ()))
        if self.bed and self.reference is None:
            raise GenomixError("--bed needs --reference genome.fa, the genome its regions are cut from")
        if self.reference is not None and not self.bed:
            raise GenomixError("--reference is used with --bed only")
        if self.genomes and (self.inputs or self.bed):
            raise GenomixError("--genome reads windows of whole genomes: give it without sequence files or --bed")
        if self.genomes and self.labels:
            raise GenomixError("--labels labels sequence files; --genome windows take the class of their genome")
        if self.labels is not None:
            object.__setattr__(self, "_table", LabelTable(str(self.labels)))

    @property
    def empty(self) -> bool:
        return not (self.inputs or self.bed or self.genomes)

    def require(self, what: str, genomes: bool = True) -> None:
        """Refuse an empty source (or, with `genomes=False`, one of genomes) for the command doing `what`."""
        if self.genomes and not genomes:
            raise GenomixError("--genome is not an input of this command: give sequence files or --bed regions")
        if self.empty:
            alternatives = ", --bed regions with --reference" + (" or --genome CLASS=genome.fa" if genomes else "")
            raise GenomixError(f"nothing to {what}: give sequence files{alternatives}")

    @property
    def names(self) -> list[str]:
        """The inputs as the user gave them, for the model card."""
        return [*self.inputs, *self.bed, *self.genomes]

    @property
    def files(self) -> list[str]:
        """Every file this source reads, which no output may overwrite."""
        return [*self.names, *self.val_inputs, *(f for f in (self.labels, self.reference) if f)]

    def records(self) -> Iterator[Record]:
        """Records of the sequence files, then of the BED regions, in order, streamed."""
        if self.genomes:
            raise GenomixError("--genome inputs are read as windows, not as records")
        return self._read(self.inputs, with_regions=True, last=not self.val_inputs)

    def validation_records(self) -> Iterator[Record]:
        return self._read(self.val_inputs, with_regions=False, last=True)

    def genome_set(self, window: int, holdout_fraction: float) -> GenomeSet:
        return GenomeSet.open(self.genomes, window, holdout_fraction)

    def _read(self, inputs: Sequence[str], with_regions: bool, last: bool) -> Iterator[Record]:
        yield from read_inputs(inputs, self._table)
        if with_regions:
            yield from read_regions(self.bed, self.reference)
        if last and self._table is not None:
            self._table.check_all_matched()
