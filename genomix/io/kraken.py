"""Kraken2's formats, so that the tools built around Kraken2 (MultiQC, taxpasta, Krona, kraken-biom, KrakenTools)
read genomix's results as they read Kraken2's.

A `Taxonomy` places each class in a tree: from `--taxonomy classes.tsv` (a class's NCBI taxid, and optionally its
name, rank and lineage), or, without one, every class a species (rank S) directly under the root with a stable id
of its own (`stable_taxid`: the same class name gets the same id in every model and every run). The report is
Kraken2's six columns (percentage of all records, records in the clade, records called this taxon directly, rank
code, taxid, the name indented two spaces per level), `unclassified` (taxid 0) first, children in decreasing
order of their clade's records as Kraken2 orders them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from genomix.errors import GenomixError

ROOT = 1  # NCBI's root, as Kraken2 names it
UNCLASSIFIED_TAXID = 0
STABLE_BASE, STABLE_SPAN = 2_000_000_000, 100_000_000  # ids above any NCBI taxid, below 2^31 for 32-bit readers
RANK = re.compile(r"^(?:[URDKPCOFGS]\d*|-)$")  # Kraken2's rank codes: a letter, a depth below it, or none


@dataclass(frozen=True)
class Taxon:
    taxid: int
    name: str
    rank: str
    parent: int | None  # None: the root


def stable_taxid(name: str) -> int:
    """An id for a class with no NCBI taxid: from its name alone, so that reports of different models and runs
    agree; far above NCBI's ids so that the two never meet."""
    return STABLE_BASE + zlib.crc32(name.encode()) % STABLE_SPAN


@dataclass
class Taxonomy:
    """The tree the report is written over: every taxon by id, and each class's taxon."""

    taxa: dict[int, Taxon] = field(default_factory=lambda: {ROOT: Taxon(ROOT, "root", "R", None)})
    of_class: dict[str, int] = field(default_factory=dict)

    @classmethod
    def default(cls, classes: Sequence[str]) -> Taxonomy:
        """Every class a species under the root, with its `stable_taxid`."""
        taxonomy = cls()
        for name in classes:
            taxonomy.add(name, [Taxon(stable_taxid(name), name, "S", ROOT)], "genomix")
        return taxonomy

    @classmethod
    def read(cls, path: str | Path | None, classes: Sequence[str]) -> Taxonomy:
        """The taxonomy of a table (`--taxonomy`), which must place every class; None: `default`.

        The table is tab-separated with a header: `class` and `taxid` are required; `name` (default: the class),
        `rank` (default: S) and `lineage` (the ancestors from the top down, without the root: `RANK:TAXID:NAME`
        entries separated by `;`, e.g. `D:2:Bacteria;P:1224:Pseudomonadota;G:561:Escherichia`) are optional."""
        if path is None:
            return cls.default(classes)
        rows = _table(path)
        taxonomy = cls()
        for row in rows:
            if row["class"] in classes:
                taxonomy.add(row["class"], _lineage(row, path), path)
        missing = [c for c in classes if c not in taxonomy.of_class]
        if missing:
            raise GenomixError(f"--taxonomy {path}: no row for the class(es) {', '.join(missing)}")
        return taxonomy

    def add(self, name: str, lineage: list[Taxon], source: str | Path) -> None:
        """Place class `name` at the last taxon of `lineage`; a taxid seen before must have the same name and
        parent."""
        for taxon in lineage:
            known = self.taxa.setdefault(taxon.taxid, taxon)
            if known != taxon:
                raise GenomixError(f"--taxonomy {source}: taxid {taxon.taxid} is given as {known.name!r} "
                                   f"(rank {known.rank}, parent {known.parent}) and as {taxon.name!r} "
                                   f"(rank {taxon.rank}, parent {taxon.parent})")
        taxid = lineage[-1].taxid
        other = next((c for c, t in self.of_class.items() if t == taxid), None)
        if other is not None:
            raise GenomixError(f"--taxonomy {source}: classes {other} and {name} have the same taxid {taxid}")
        self.of_class[name] = taxid

    def taxid(self, label: str) -> int:
        """A called label's taxid: 0 for a label that is no class (unclassified)."""
        return self.of_class.get(label, UNCLASSIFIED_TAXID)

    def write_report(self, direct: Mapping[str, int], out: IO) -> None:
        """The Kraken2 report of records called per label (`direct`); labels that are no class count as
        unclassified."""
        per_taxon = {taxid: 0 for taxid in self.taxa}
        unclassified = 0
        for label, n in direct.items():
            if label in self.of_class:
                per_taxon[self.of_class[label]] += n
            else:
                unclassified += n
        children: dict[int, list[int]] = {}
        for taxon in self.taxa.values():
            if taxon.parent is not None:
                children.setdefault(taxon.parent, []).append(taxon.taxid)
        clade = self._clades(per_taxon, children)
        total = max(1, unclassified + clade[ROOT])
        out.write(_line(unclassified, unclassified, total, "U", UNCLASSIFIED_TAXID, "unclassified", 0))
        stack = [(ROOT, 0)]
        while stack:
            taxid, depth = stack.pop()
            taxon = self.taxa[taxid]
            out.write(_line(clade[taxid], per_taxon[taxid], total, taxon.rank, taxid, taxon.name, depth))
            below = sorted(children.get(taxid, []), key=lambda t: (-clade[t], self.taxa[t].name))
            stack += [(child, depth + 1) for child in reversed(below)]

    def _clades(self, per_taxon: dict[int, int], children: dict[int, list[int]]) -> dict[int, int]:
        """Records in each taxon's clade: its own and its descendants'."""
        clade: dict[int, int] = {}

        def count(taxid: int) -> int:
            clade[taxid] = per_taxon[taxid] + sum(count(child) for child in children.get(taxid, []))
            return clade[taxid]

        count(ROOT)
        return clade


def _line(clade: int, direct: int, total: int, rank: str, taxid: int, name: str, depth: int) -> str:
    return f"{100 * clade / total:6.2f}\t{clade}\t{direct}\t{rank}\t{taxid}\t{'  ' * depth}{name}\n"


def _table(path: str | Path) -> list[dict[str, str]]:
    try:
        lines = [line.rstrip("\r\n").split("\t") for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise GenomixError(f"--taxonomy {path}: {err.strerror}") from None
    header = lines[0] if lines else []
    if not {"class", "taxid"} <= set(header):
        raise GenomixError(f"--taxonomy {path}: the header must name the columns class and taxid "
                           "(and optionally name, rank, lineage)")
    return [dict(zip(header, [*cells, *[""] * len(header)])) for cells in lines[1:]]


def _lineage(row: dict[str, str], path: str | Path) -> list[Taxon]:
    """The class's ancestors (`lineage`) and the class's own taxon, each the child of the one before."""
    entries = [e.split(":", 2) for e in row.get("lineage", "").split(";") if e.strip()]
    entries.append([row.get("rank") or "S", row["taxid"], row.get("name") or row["class"]])
    lineage, parent = [], ROOT
    for entry in entries:
        if len(entry) != 3 or not RANK.match(entry[0].strip()) or not entry[1].strip().isdigit():
            raise GenomixError(f"--taxonomy {path}: class {row['class']}: {':'.join(entry)!r} is not "
                               "RANK:TAXID:NAME (a Kraken2 rank code such as G or S1, a number, a name)")
        taxid = int(entry[1])
        if taxid in (UNCLASSIFIED_TAXID, ROOT):
            raise GenomixError(f"--taxonomy {path}: class {row['class']}: taxid {taxid} is reserved "
                               "(0 unclassified, 1 the root)")
        lineage.append(Taxon(taxid, entry[2].strip(), entry[0].strip(), parent))
        parent = taxid
    return lineage
