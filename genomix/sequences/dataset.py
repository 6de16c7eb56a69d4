"""Labelled records as a training set: token arrays, class indices and the class names, checked once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from genomix.errors import GenomixError
from genomix.io.reading import Record
from genomix.io.writers import UNCLASSIFIED, UNKNOWN
from genomix.sequences.tokens import encode


def class_index(record_id: str, label: str | None, index: dict[str, int], what: str) -> int:
    """The index of a record's label among known classes; a missing or unknown label is a user error."""
    if label is None:
        raise GenomixError(f"{what} record '{record_id}' has no label (give CLASS=file, --labels, or label= in "
                           "its header)")
    if label not in index:
        raise GenomixError(f"{what} record '{record_id}' has label '{label}', not a class of the model "
                           f"({', '.join(index)})")
    return index[label]


_NEGATIVE_NAMES = {"negative", "neg", "background", "control", "random", "other", "none"}
_NEGATIVE_PREFIXES = ("non_", "non-", "not_", "not-", "no_", "no-")


def positive_class(classes: Sequence[str], given: str | None = None) -> str | None:
    """A binary model's positive class: `given`, else the one whose partner is named as the negative class
    (`non_enhancer`, `background`, `negative`...), else the second in sorted order. None for other models."""
    if given is not None:
        if given not in classes:
            raise GenomixError(f"--positive-class {given}: not a class ({', '.join(classes)})")
        return given
    if len(classes) != 2:
        return None
    negative = [c.lower() in _NEGATIVE_NAMES or c.lower().startswith(_NEGATIVE_PREFIXES) for c in classes]
    return classes[negative.index(False)] if sum(negative) == 1 else classes[1]


@dataclass
class LabelledSet:
    """Token arrays with their class indices into `classes` (sorted names, unless given)."""

    tokens: list[np.ndarray]
    y: np.ndarray
    classes: list[str]

    @classmethod
    def of(cls, records: Iterable[Record], classes: Sequence[str] | None = None, what: str = "training") -> LabelledSet:
        records = list(records)
        if classes is None:
            missing = next((r for r in records if r.label is None), None)
            if missing is not None:
                class_index(missing.id, None, {}, what)
            classes = sorted({r.label for r in records})
            reserved = sorted(set(classes) & {UNCLASSIFIED, UNKNOWN})
            if reserved:
                raise GenomixError(f"class '{reserved[0]}' is the label genomix gives records it cannot call: rename "
                                   "that class (e.g. with --labels)")
            if len(classes) < 2:
                held = f"every record is labelled '{classes[0]}'" if classes else "there are no records"
                raise GenomixError(f"training needs at least two classes; {held}")
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([class_index(r.id, r.label, index, what) for r in records], dtype=np.int64)
        return cls([encode(r.seq) for r in records], y, list(classes))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=len(self.classes))

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.tokens])

    def subset(self, rows: Sequence[int]) -> LabelledSet:
        return LabelledSet([self.tokens[i] for i in rows], self.y[list(rows)], self.classes)

    def split(self, fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
        """A stratified split into training and validation sets."""
        from sklearn.model_selection import train_test_split  # imported here: loading sklearn costs ~1 s

        if self.counts.min() < 2 or round(fraction * len(self)) < len(self.classes):
            raise GenomixError("too few records for a stratified validation split: give --val FILE or more data")
        train, val = train_test_split(np.arange(len(self)), test_size=fraction, stratify=self.y, random_state=seed)
        return self.subset(train), self.subset(val)
