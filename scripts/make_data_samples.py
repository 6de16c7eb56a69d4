"""Cut the small FASTA samples in ``data_samples/``: species of origin and mouse TATA promoters.

The README demo and the end-to-end test need tiny, real, labelled data sets that ship with the
repository. The species sample is cut from two public NCBI genome records that are distributed as test
data in the PyPI ``pyrodigal`` 3.7.1 wheel:

* ``corynebacterium_diphtheriae_NCTC11397.fna.gz``: NZ_LN831026.1, *C. diphtheriae* NCTC11397 chromosome.
* ``escherichia_coli_MIIJ01000039_contig.fna.gz``: *E. coli* WGS contig 562.SAMN05730656.MIIJ01000039.

Windows of 200..400 bp are drawn at random positions and strands, never overlap, and never contain a
non-ACGT character. Each genome is split into two disjoint regions first (the first 80% of its ACGT
positions feed train, the rest feed test), so no train window shares sequence with a test window.

The promoter sample (the README's first command) draws equal numbers of promoters and non-promoters
from the train and the test split of ``../shared/data/mouse_tata_promoters`` (never mixing the two):
a task where the label lies in a position-bound motif (the TATA box), which the network reads and a
k-mer profile does not.

The output is deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENOMES: dict[str, str] = {
    "corynebacterium_diphtheriae": "corynebacterium_diphtheriae_NCTC11397.fna.gz",
    "escherichia_coli": "escherichia_coli_MIIJ01000039_contig.fna.gz",
}
COUNTS: dict[str, int] = {"train": 300, "test": 100}
TRAIN_FRACTION = 0.8
MIN_LEN, MAX_LEN = 200, 400
WRAP = 80
MAX_TRIES = 1_000_000
COMPLEMENT = str.maketrans("ACGT", "TGCA")
SHARED = Path(__file__).resolve().parents[1].parent / "shared/data"
DEFAULT_GENOMES = SHARED / "genomes"
PROMOTER_SET = "mouse_tata_promoters"
PROMOTER_PREFIX = "mouse_tata"
PROMOTER_COUNTS: dict[str, int] = {"train": 600, "test": 150}
PROMOTER_LABELS = ("promoter", "non_promoter")


@dataclass(frozen=True)
class Window:
    """One sampled window: 0-based half-open ``[start, end)`` on the forward strand."""

    label: str
    source: str
    start: int
    end: int
    strand: str
    seq: str


def read_fasta(path: Path) -> str:
    """Return the upper-cased sequence of a gzipped single-record FASTA file."""
    with gzip.open(path, "rt", encoding="ascii") as handle:
        header = handle.readline()
        if not header.startswith(">"):
            raise ValueError(f"{path} is not FASTA")
        seq = "".join(line.strip() for line in handle)
    if ">" in seq:
        raise ValueError(f"{path} holds more than one record")
    return seq.upper()


def split_point(valid: np.ndarray) -> int:
    """Coordinate that leaves ``TRAIN_FRACTION`` of the ACGT positions before it."""
    usable = np.flatnonzero(valid)
    return int(usable[int(len(usable) * TRAIN_FRACTION)])


def sample_windows(
    rng: np.random.Generator,
    label: str,
    source: str,
    seq: str,
    bad_prefix: np.ndarray,
    lo: int,
    hi: int,
    n: int,
) -> list[Window]:
    """Draw ``n`` non-overlapping ACGT-only windows inside ``[lo, hi)``."""
    taken = np.zeros(hi - lo, dtype=bool)
    windows: list[Window] = []
    for _ in range(MAX_TRIES):
        if len(windows) == n:
            return windows
        length = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        start = int(rng.integers(lo, hi - length + 1))
        end = start + length
        strand = "-" if rng.random() < 0.5 else "+"
        if bad_prefix[end] != bad_prefix[start] or taken[start - lo : end - lo].any():
            continue
        taken[start - lo : end - lo] = True
        window = seq[start:end]
        if strand == "-":
            window = window.translate(COMPLEMENT)[::-1]
        windows.append(Window(label, source, start, end, strand, window))
    raise RuntimeError(f"could not place {n} windows for {label} in [{lo}, {hi})")


def write_fasta(path: Path, split: str, windows: list[Window]) -> None:
    """Write windows as 80-column FASTA with ``label=`` and ``src=`` header fields."""
    with path.open("w", encoding="ascii", newline="\n") as handle:
        for i, w in enumerate(windows, start=1):
            src = f"{w.source}:{w.start + 1}-{w.end}({w.strand})"
            handle.write(f">sp_{split}_{i:04d} label={w.label} src={src}\n")
            for j in range(0, len(w.seq), WRAP):
                handle.write(w.seq[j : j + WRAP] + "\n")


def read_records(path: Path) -> list[tuple[str, str]]:
    """(header without ``>``, sequence) pairs of a gzipped FASTA file."""
    records: list[tuple[str, list[str]]] = []
    with gzip.open(path, "rt", encoding="ascii") as handle:
        for line in handle:
            line = line.strip()
            if line.startswith(">"):
                records.append((line[1:], []))
            elif line:
                records[-1][1].append(line)
    return [(header, "".join(parts).upper()) for header, parts in records]


def label_of(header: str) -> str:
    """The ``label=`` field of a FASTA header."""
    return next(field[len("label=") :] for field in header.split() if field.startswith("label="))


def sample_promoters(rng: np.random.Generator, folder: Path, split: str) -> list[tuple[str, str]]:
    """``PROMOTER_COUNTS[split]`` records per class from one split, shuffled so the classes interleave."""
    records = read_records(folder / f"{split}.fa.gz")
    chosen: list[tuple[str, str]] = []
    for label in PROMOTER_LABELS:
        pool = [record for record in records if label_of(record[0]) == label]
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), PROMOTER_COUNTS[split], replace=False))]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def write_records(path: Path, records: list[tuple[str, str]]) -> None:
    """Write records as FASTA wrapped at ``WRAP`` columns, headers kept as in the source."""
    with path.open("w", encoding="ascii", newline="\n") as handle:
        for header, seq in records:
            handle.write(f">{header}\n")
            for j in range(0, len(seq), WRAP):
                handle.write(seq[j : j + WRAP] + "\n")


def gc_content(windows: list[Window]) -> float:
    """Fraction of G and C over all bases of the windows."""
    bases = "".join(w.seq for w in windows)
    return (bases.count("G") + bases.count("C")) / len(bases)


def promoter_section(promoters: dict[str, list[tuple[str, str]]]) -> str:
    """The ``SOURCE.md`` section on the promoter sample, with its per-split counts."""
    rows = []
    for split, records in promoters.items():
        for label in PROMOTER_LABELS:
            seqs = [seq for header, seq in records if label_of(header) == label]
            bases = "".join(seqs)
            gc = (bases.count("G") + bases.count("C")) / len(bases)
            rows.append(
                f"| `{PROMOTER_PREFIX}_{split}.fa` | `{label}` | {len(seqs)} | "
                f"{min(map(len, seqs))}..{max(map(len, seqs))} | {gc:.3f} | `{split}.fa.gz` |"
            )
    return f"""## Mouse TATA promoters: `{PROMOTER_PREFIX}_train.fa`, `{PROMOTER_PREFIX}_test.fa`

Is a 251 nt mouse sequence a TATA-box promoter (EPDnew, -200..+50 around the transcription start
site) or a fragment of a gene after its first exon? Two classes, `promoter` and `non_promoter`. The
README's first command trains on it: the TATA box sits at a fixed place, which the network reads and
a k-mer profile does not, so the network carries the prediction.

- `{PROMOTER_PREFIX}_train.fa`: {PROMOTER_COUNTS["train"]} sequences per class; \
`{PROMOTER_PREFIX}_test.fa`: {PROMOTER_COUNTS["test"]} per class.
- Plain FASTA, upper-case ACGT only, sequence lines wrapped at {WRAP} columns, records shuffled so the
  classes are interleaved. Headers are those of the source files
  (`>mouse_tata_train_00000 label=non_promoter src=ORIGINAL_ID`).

### Source

`../shared/data/{PROMOTER_SET}` (its `SOURCE.md` has the details), itself from GitHub
`solovictor/CNNPromoterData` (commit b4d2949e9bc5206f3049b35a488b036125ccc653), files `Mouse_tata.fa`
and `Mouse_nonprom.fa`: the data of Umarov & Solovyev, "Recognition of prokaryotic and eukaryotic
promoters using convolutional deep learning neural networks", PLOS ONE 12(2):e0171410 (2017).
Promoters come from EPDnew; non-promoters are random 251 nt fragments of genes located after their
first exon. License: the repository carries no license file; it is the data release of an open-access
PLOS ONE paper (CC BY 4.0 article); EPDnew has its own academic terms. Research/benchmark use with
citation.

### Sampling

- The shared folder splits the source 80/20 per class (seed 42). Train records are drawn only from its
  `train.fa.gz`, test records only from its `test.fa.gz`.
- Equal numbers per class, drawn without replacement (the source has about 2.8 non-promoters per
  promoter), so that so small a sample still holds enough promoters to learn from.

| file | label | sequences | length (nt) | GC | drawn from |
|---|---|---|---|---|---|
{chr(10).join(rows)}

"""


def write_source(
    path: Path,
    command: str,
    splits: dict[str, list[Window]],
    regions: dict[str, dict[str, str]],
    promoters: dict[str, list[tuple[str, str]]],
) -> None:
    """Write the provenance note ``SOURCE.md`` next to the FASTA files."""
    rows = []
    for split, windows in splits.items():
        for label in GENOMES:
            chosen = [w for w in windows if w.label == label]
            lengths = [len(w.seq) for w in chosen]
            rows.append(
                f"| `species_{split}.fa` | `{label}` | {len(chosen)} | {min(lengths)}..{max(lengths)} "
                f"| {gc_content(chosen):.3f} | {regions[label][split]} |"
            )
    digests = []
    for name in [f"{PROMOTER_PREFIX}_{split}.fa" for split in promoters] + [f"species_{split}.fa" for split in splits]:
        digests.append(f"| `{name}` | `{hashlib.sha256((path.parent / name).read_bytes()).hexdigest()}` |")
    path.write_text(
        f"""# data_samples

Two small, real, labelled DNA samples for the README demo and the tests.

{promoter_section(promoters)}## Species of origin: `species_train.fa`, `species_test.fa`

Which species does a 200..400 bp fragment come from? Two classes, `corynebacterium_diphtheriae` and
`escherichia_coli`. The end-to-end tests train on it.

- `species_train.fa`: {COUNTS["train"]} windows per class; `species_test.fa`: {COUNTS["test"]} per class.
- Plain FASTA, upper-case ACGT only, sequence lines wrapped at {WRAP} columns, records shuffled so the
  classes are interleaved.
- Header: `>sp_train_0001 label=escherichia_coli src=FILE:START-END(STRAND)`; START-END are 1-based
  inclusive coordinates on the forward strand of the source record; for strand `-` the sequence is
  the reverse complement of that range.

### Sources

Both genomes are public NCBI records shipped as test data in the PyPI `pyrodigal` 3.7.1 wheel
(the package is GPL-3.0-or-later; the sequences themselves are public NCBI records).

| label | file | record | organism | length |
|---|---|---|---|---|
| `corynebacterium_diphtheriae` | `{GENOMES["corynebacterium_diphtheriae"]}` | NZ_LN831026.1 (RefSeq \
assembly GCF_001457455.1), complete chromosome | *Corynebacterium diphtheriae* NCTC11397 | 2,463,666 bp |
| `escherichia_coli` | `{GENOMES["escherichia_coli"]}` | WGS contig `562.SAMN05730656.MIIJ01000039` | \
*Escherichia coli* (taxid 562) | 869,782 positions, 432,770 of them `N` |

In the wheel they are `pyrodigal/tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz` and
`pyrodigal/tests/data/MIIJ01000039.fna.gz`.

### Sampling

- Window length uniform in {MIN_LEN}..{MAX_LEN} bp, position uniform, strand `+` or `-` with equal chance.
- Windows never overlap and never contain `N` or any other non-ACGT character.
- Train/test split by region: each genome is cut at the coordinate that leaves the first
  {TRAIN_FRACTION:.0%} of its ACGT positions before it; train windows lie wholly before the cut, test
  windows wholly after it, so no train and test window share any base.

| file | label | windows | length (bp) | GC | source region (1-based) |
|---|---|---|---|---|---|
{chr(10).join(rows)}

## Regenerate

From the repository root, with the genomes in `../shared/data/genomes` and the promoter set in
`../shared/data/{PROMOTER_SET}`:

```
{command}
```

The output is byte-identical for the same seed. SHA-256:

| file | sha256 |
|---|---|
{chr(10).join(digests)}
""",
        encoding="ascii",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", type=Path, default=DEFAULT_GENOMES, help="folder with the .fna.gz files")
    parser.add_argument(
        "--promoters", type=Path, default=SHARED / PROMOTER_SET, help="folder with the promoter train/test .fa.gz"
    )
    parser.add_argument("--out", type=Path, default=Path("data_samples"), help="output folder")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    sampled: dict[str, list[Window]] = {split: [] for split in COUNTS}
    regions: dict[str, dict[str, str]] = {}
    for label, source in GENOMES.items():
        seq = read_fasta(args.genomes / source)
        codes = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        valid = np.isin(codes, np.frombuffer(b"ACGT", dtype=np.uint8))
        bad_prefix = np.concatenate(([0], np.cumsum(~valid)))
        cut = split_point(valid)
        bounds = {"train": (0, cut), "test": (cut, len(seq))}
        regions[label] = {split: f"{lo + 1:,}-{hi:,}" for split, (lo, hi) in bounds.items()}
        for split, (lo, hi) in bounds.items():
            sampled[split] += sample_windows(rng, label, source, seq, bad_prefix, lo, hi, COUNTS[split])

    splits = {split: [ws[i] for i in rng.permutation(len(ws))] for split, ws in sampled.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    for split, windows in splits.items():
        write_fasta(args.out / f"species_{split}.fa", split, windows)
        for label in GENOMES:
            chosen = [w for w in windows if w.label == label]
            print(f"{split:5s} {label:28s} n={len(chosen)} GC={gc_content(chosen):.3f}")
    promoter_rng = np.random.default_rng([args.seed, 1])
    promoters = {split: sample_promoters(promoter_rng, args.promoters, split) for split in PROMOTER_COUNTS}
    for split, records in promoters.items():
        write_records(args.out / f"{PROMOTER_PREFIX}_{split}.fa", records)
        print(f"{split:5s} {PROMOTER_PREFIX:28s} n={len(records)}")
    command = f"python scripts/make_data_samples.py --out {args.out.as_posix()} --seed {args.seed}"
    write_source(args.out / "SOURCE.md", command, splits, regions, promoters)


if __name__ == "__main__":
    main()
