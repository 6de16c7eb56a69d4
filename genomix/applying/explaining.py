"""`genomix explain`: how much each base of a record drives the model's log-odds of one class.

Every method scores records as `predict` does (windows of max_len, both strands for a two-strand model, the
temperature) and reports per-base scores in log-odds units, positive where a base supports the class:

- `ism`: in-silico mutagenesis (`genomix.applying.effects`): every base set to each other base, the exact change of the
  log-odds. A base's score is minus the mean of its three substitution effects (the log-odds lost, on average,
  when it is replaced). Exact, and the reference the others are judged against; 3·L forward passes per record.
- `gradient`: gradient × input on the models' one-hot path (`genomix.sequences.tokens.one_hot`): one forward and one
  backward pass. A base's score is its gradient minus the mean of the other three bases' gradients, the
  first-order (Taylor) estimate of the ISM score; gradients off the one-hot simplex carry no meaning, and this
  difference removes them (Majdandzic et al., 2023).
- `ig`: integrated gradients (Sundararajan et al., 2017) from dinucleotide-shuffled references (tangermeme's
  `dinucleotide_shuffle`, the references DeepLIFT/DeepSHAP use): the scores of a record sum to its log-odds
  minus its references' mean (completeness). REFERENCES × IG_STEPS gradient passes per record.

The k-mer embedding and the k-mer composition term are differentiated exactly through the multilinear extension
of their indicators (`genomix.sequences.tokens.kmer_weights`): equal to the token path at one-hot input. An N has
no base of its own: its score is 0 (ISM still reports its four substitutions).

Each record also gets a (L, 4) hypothetical-contribution matrix (what each base would contribute at each
position; its observed-base entry is the score), the input of motif discovery (`genomix.applying.motifs`). For ISM and
gradient it is 4/3 × the mean-centred substitution effects or gradients; for ig, (e_b − reference) · gradient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genomix.applying import motifs
from genomix.applying.attributions import Explanation
from genomix.applying.calibration import calibrated
from genomix.applying.effects import substitution_effects
from genomix.applying.scoring import BATCH_SIZE, Scorer, log_odds, owner_means, tiles
from genomix.console import console
from genomix.errors import GenomixError, require
from genomix.io.files import atomic_path, check_outputs, output_folder
from genomix.io.formats import output_format
from genomix.io.genomes import Genome, parse_region_id
from genomix.io.reading import Record
from genomix.io.sources import RecordSource
from genomix.io.tracks import open_track
from genomix.io.writers import output_stream
from genomix.models.modelfile import TrainedModel, load_model
from genomix.sequences.batching import window_starts
from genomix.sequences.tokens import BASE_TOKENS, encode, one_hot

METHODS = ("ism", "gradient", "ig")
MAX_ISM_PASSES = 1_000_000  # window forward passes one ISM request may need before it is refused
REFERENCES = 4  # dinucleotide-shuffled references per record (ig)
IG_STEPS = 8  # points on each path from a reference to the record (ig; midpoint rule)
PREDICTED = "predicted"  # --class predicted: each record's most probable class


def check_range(records: Sequence[Record], start: int | None, end: int | None) -> None:
    """--start/--end (0-based, end exclusive) must lie inside every record."""
    for record in records:
        if not record.seq:
            raise GenomixError(f"record '{record.id}' is empty: it has no bases to explain")
        lo, hi = start or 0, len(record.seq) if end is None else end
        if not 0 <= lo < hi <= len(record.seq):
            raise GenomixError(f"--start {lo} --end {hi}: outside record '{record.id}' of {len(record.seq)} bases "
                               "(positions are 0-based, end exclusive)")


def ism_passes(records: Sequence[Record], max_len: int, rc: bool, start: int | None, end: int | None) -> int:
    """Window forward passes ISM needs: each substitution rescores the windows that cover its base, on each strand
    (3 substitutions of A, C, G or T, 4 of an N), plus each record's own windows."""
    total = 0
    for record in records:
        length = len(record.seq)
        starts = window_starts(length, max_len)
        cover = np.zeros(length, dtype=np.int64)
        for s in starts:
            cover[s : s + max_len] += 1
        lo, hi = start or 0, length if end is None else end
        substitutions = np.where(np.isin(encode(record.seq[lo:hi]), BASE_TOKENS), 3, 4)
        total += int((substitutions * cover[lo:hi]).sum()) + len(starts)
    return total * (2 if rc else 1)


class BaseGradients:
    """d log-odds / d base weights (L, 4) of records, through the model's one-hot path, its windows, strands and
    temperature: the gradient of exactly the score `predict` gives at one-hot input. Records whose windows fit
    a batch are differentiated a batch of records at a time; a longer record's windows are scored first, and
    the gradient of its log-odds with respect to each window's row then weights that window's backward pass."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer, self.device, self.batch_size = scorer, scorer.device, scorer.batch_size

    def pieces(self, bases: Tensor) -> list[Tensor]:
        """The pieces of one record's base weights (`scoring.tiles`): a window's reverse complement reverses the
        positions and complements the bases (A C G T → T G C A is a flip of the last axis)."""
        return tiles(bases, self.scorer.max_len, self.scorer.rc, lambda w: w.flip(0, 1))

    def rows(self, pieces: Sequence[Tensor]) -> Tensor:
        """(P, classes) log-softmax of each piece, in full precision."""
        padded = torch.nn.utils.rnn.pad_sequence(list(pieces), batch_first=True)
        lengths = torch.tensor([len(p) for p in pieces], device=self.device)
        return torch.log_softmax(self.scorer.network(padded, lengths).float(), -1)

    def log_odds(self, rows: Tensor, owners: Tensor, n: int, targets: Tensor) -> Tensor:
        """(n,) each record's calibrated log-odds of its target from its pieces' rows, combined as `Scorer`
        combines them."""
        return log_odds(calibrated(owner_means(rows, owners, n), self.scorer.temperature), targets)

    def count(self, length: int) -> int:
        """How many pieces a record of `length` bases is scored as."""
        return len(window_starts(length, self.scorer.max_len)) * self.scorer.pieces_per_window

    def __call__(self, bases: Sequence[np.ndarray], targets: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """The gradients (L, 4) of each record's log-odds of its target, and the log-odds."""
        grads: list[np.ndarray] = []
        odds: list[np.ndarray] = []
        for group in self._groups(bases):
            if self.count(len(bases[group[0]])) > self.batch_size:
                g, o = self._long(bases[group[0]], int(targets[group[0]]))
                grads, odds = grads + [g], odds + [o]
            else:
                g, o = self._records([bases[i] for i in group], targets[group])
                grads, odds = grads + g, odds + [o]
        return grads, np.concatenate(odds) if odds else np.zeros(0)

    def _groups(self, bases: Sequence[np.ndarray]) -> Iterator[list[int]]:
        """Consecutive records whose pieces fill at most a batch; a record of more pieces alone."""
        group: list[int] = []
        size = 0
        for i, b in enumerate(bases):
            n = self.count(len(b))
            if group and size + n > self.batch_size:
                yield group
                group, size = [], 0
            group.append(i)
            size += n
        if group:
            yield group

    def _leaf(self, bases: np.ndarray) -> Tensor:
        return torch.tensor(bases, dtype=torch.float32, device=self.device, requires_grad=True)

    def _records(self, bases: list[np.ndarray], targets: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        leaves = [self._leaf(b) for b in bases]
        pieces = [self.pieces(leaf) for leaf in leaves]
        owners = torch.tensor([r for r, p in enumerate(pieces) for _ in p], device=self.device)
        rows = self.rows([p for ps in pieces for p in ps])
        odds = self.log_odds(rows, owners, len(leaves), torch.as_tensor(targets, device=self.device))
        odds.sum().backward()
        return [leaf.grad.cpu().numpy() for leaf in leaves], odds.detach().cpu().numpy()

    def _long(self, bases: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
        leaf = self._leaf(bases)
        pieces = self.pieces(leaf)
        batches = [pieces[i : i + self.batch_size] for i in range(0, len(pieces), self.batch_size)]
        with torch.no_grad():
            rows = torch.cat([self.rows(batch) for batch in batches]).requires_grad_()
        owners = torch.zeros(len(pieces), dtype=torch.int64, device=self.device)
        odds = self.log_odds(rows, owners, 1, torch.tensor([target], device=self.device))
        odds.backward()
        for at, batch in zip(range(0, len(pieces), self.batch_size), batches):
            (self.rows(batch) * rows.grad[at : at + len(batch)]).sum().backward()
        return leaf.grad.cpu().numpy(), odds.detach().cpu().numpy()


def _centred(values: np.ndarray) -> np.ndarray:
    """4/3 × the mean-centred rows: the hypothetical contributions of substitution effects or gradients, whose
    observed-base entry is the base's value minus the mean of the other three."""
    return (values - values.mean(1, keepdims=True)) * 4 / 3


def _ism(scorer: Scorer, seq: str, target: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    effects = substitution_effects(scorer, encode(seq), target, lo, hi)
    return _centred(effects), effects


def _integrated(gradients: BaseGradients, seqs: Sequence[str], targets: np.ndarray, seed: int) -> list[np.ndarray]:
    """Integrated gradients from REFERENCES dinucleotide shuffles of each record, IG_STEPS midpoints per path:
    hypothetical contributions mean over references of (e_b − reference) · mean gradient along the path."""
    from tangermeme.ersatz import dinucleotide_shuffle  # imported here: only ig needs it (and numba's start-up)

    alphas = (np.arange(IG_STEPS, dtype=np.float32) + 0.5) / IG_STEPS
    out = []
    for i, seq in enumerate(seqs):
        x = one_hot(torch.from_numpy(encode(seq))).numpy()
        shuffled = dinucleotide_shuffle(torch.from_numpy(x.T[None].copy()), n=REFERENCES, random_state=seed + i,
                                        allow_N=True)
        refs = shuffled[0].permute(0, 2, 1).float().numpy()  # (R, L, 4)
        points = [ref + a * (x - ref) for ref in refs for a in alphas]
        grads, _ = gradients(points, np.full(len(points), targets[i]))
        mean = np.stack(grads).reshape(REFERENCES, IG_STEPS, *x.shape).mean(1)  # (R, L, 4)
        out.append((mean - (refs * mean).sum(-1, keepdims=True)).mean(0))
    return out


def target_class(model: TrainedModel, class_name: str | None) -> int | None:
    """The class explained: --class NAME, None for `predicted` (each record's most probable class); by default a
    binary model's positive class, and the predicted class of a model of more classes."""
    if class_name is not None and class_name in model.classes:
        return model.classes.index(class_name)
    if class_name not in (None, PREDICTED):
        raise GenomixError(f"--class {class_name}: not a class of this model ({', '.join(model.classes)}); "
                           f"or --class {PREDICTED}")
    return model.positive_index if class_name is None else None


def attribute(model: TrainedModel, records: Sequence[Record], method: str = "gradient", class_name: str | None = None,
              start: int | None = None, end: int | None = None, batch_size: int = BATCH_SIZE, device: str = "auto",
              rc: bool | None = None, seed: int = 0, max_passes: int = MAX_ISM_PASSES,
              precision: str = "auto") -> list[Explanation]:
    """The explanations of `records` by `method` (see the module docstring) for bases [start, end) of each.

    ISM that would need more than `max_passes` window forward passes is refused before it starts.
    """
    if method not in METHODS:
        raise GenomixError(f"--method {method}: choose from {', '.join(METHODS)}")
    check_range(records, start, end)
    scorer = Scorer.of(model, device, batch_size, rc, precision=precision)
    if method == "ism":
        passes = ism_passes(records, model.max_len, scorer.rc, start, end)
        if passes > max_passes:
            raise GenomixError(f"ISM of {len(records):,} records would need {passes:,} forward passes, more than "
                               f"--max-passes {max_passes:,}: choose positions with --start/--end, explain fewer "
                               "records, or raise --max-passes")
    fixed = target_class(model, class_name)
    own = None if method == "gradient" and fixed is not None else scorer.log_probs([encode(r.seq) for r in records])
    targets = own.argmax(1).numpy() if fixed is None else np.full(len(records), fixed)
    seqs = [r.seq for r in records]
    if method == "gradient":  # its pass gives the log-odds too
        grads, odds = BaseGradients(scorer)([one_hot(torch.from_numpy(encode(s))).numpy() for s in seqs], targets)
        tables = [(_centred(g), None) for g in grads]
    else:
        odds = log_odds(own, torch.from_numpy(targets)).numpy()
        tables = [_ism(scorer, s, int(t), start or 0, len(s) if end is None else end) for s, t in zip(seqs, targets)] \
            if method == "ism" else [(h, None) for h in _integrated(BaseGradients(scorer), seqs, targets, seed)]
    explanations = []
    for record, target, row_odds, (hypothetical, substitutions) in zip(records, targets, odds, tables):
        lo, hi = start or 0, len(record.seq) if end is None else end
        if method != "ism":
            hypothetical = hypothetical[lo:hi]
        seq = record.seq[lo:hi]
        scores = (hypothetical * one_hot(torch.from_numpy(encode(seq))).numpy()).sum(1)
        explanations.append(Explanation(record.id, seq, lo, int(target), float(row_odds), scores,
                                        hypothetical.astype(np.float32), substitutions))
    return explanations


OUTPUTS = ("npz", "tsv", "bedgraph", "bigwig")  # `genomix.io.formats`; stdout: tsv
TRACKS = ("bedgraph", "bigwig")


def write_npz(explanations: Sequence[Explanation], output: str | Path, classes: Sequence[str], method: str,
              stack: ExitStack, inputs: Sequence[str] = ()) -> None:
    """One compressed NPZ: the model's `class_names`, the `method`; per record `ids`, `sequences`, `starts`,
    `classes` (the class explained), `log_odds`, and its rows
    `offsets[i]:offsets[i + 1]` of `scores` (bases,), `hypothetical` (bases, 4) and, for ism, `substitutions`.
    The file appears when `stack` closes (as do those of `write_tsv` and `write_track`)."""
    arrays = {
        "ids": np.array([e.id for e in explanations]), "sequences": np.array([e.seq for e in explanations]),
        "starts": np.array([e.start for e in explanations], dtype=np.int64),
        "classes": np.array([classes[e.target] for e in explanations]), "class_names": np.array(classes),
        "log_odds": np.array([e.log_odds for e in explanations]), "method": np.array(method),
        "offsets": np.cumsum([0, *(len(e.seq) for e in explanations)]),
        "scores": np.concatenate([e.scores for e in explanations]).astype(np.float32),
        "hypothetical": np.concatenate([e.hypothetical for e in explanations]).astype(np.float32),
    }
    if method == "ism":
        arrays["substitutions"] = np.concatenate([e.substitutions for e in explanations]).astype(np.float32)
    with open(stack.enter_context(atomic_path(output, inputs)), "wb") as out:
        np.savez_compressed(out, **arrays)


def read_npz(path: str | Path) -> tuple[list[Explanation], list[str]]:
    """The explanations an NPZ of `write_npz` holds, and their classes' names."""
    with np.load(path) as data:
        cut = data["offsets"]
        names = [str(c) for c in data["classes"]]
        found = [str(c) for c in data["class_names"]]
        rows = [slice(int(a), int(b)) for a, b in zip(cut[:-1], cut[1:])]
        return [Explanation(str(i), str(s), int(start), found.index(c), float(o), data["scores"][r],
                            data["hypothetical"][r], data["substitutions"][r] if "substitutions" in data else None)
                for i, s, start, c, o, r in zip(data["ids"], data["sequences"], data["starts"], names,
                                                 data["log_odds"], rows)], found


def write_tsv(explanations: Sequence[Explanation], output: str | Path, classes: Sequence[str], stack: ExitStack,
              inputs: Sequence[str] = ()) -> None:
    """id, class, position (0-based in the record), base, score: one row per explained base."""
    out = stack.enter_context(output_stream(output, inputs))
    out.write("id\tclass\tposition\tbase\tscore\n")
    for e in explanations:
        rows = zip(range(e.start, e.start + len(e.seq)), e.seq, e.scores.tolist())
        out.write("".join(f"{e.id}\t{classes[e.target]}\t{p}\t{b}\t{s:.6g}\n" for p, b, s in rows))


def write_track(explanations: Sequence[Explanation], output: str | Path, contigs: dict[str, int], description: str,
                kind: str, stack: ExitStack, inputs: Sequence[str] = ()) -> None:
    """Per-base scores in genome coordinates (records of --bed regions; a minus-strand region's bases mapped back
    to the forward strand), one base per interval, as a track of `kind` (`TRACKS`); a base that several regions
    cover gets their mean."""
    positions: dict[str, list[np.ndarray]] = {c: [] for c in contigs}
    values: dict[str, list[np.ndarray]] = {c: [] for c in contigs}
    for e in explanations:
        region = parse_region_id(e.id)
        if region is None:
            raise GenomixError(f"record '{e.id}' has no genome coordinates: bedGraph and bigWig outputs need --bed "
                               "regions (or write .npz or .tsv)")
        contig, first, last, strand = region
        offsets = e.start + np.arange(len(e.seq))
        positions[contig].append(last - 1 - offsets if strand == "-" else first + offsets)
        values[contig].append(e.scores)
    track = open_track(output, "genomix attributions", description, contigs, inputs, stack, kind)
    for contig in contigs:
        if positions[contig]:
            at, where = np.unique(np.concatenate(positions[contig]), return_inverse=True)
            total = np.bincount(where, weights=np.concatenate(values[contig]))
            track.add(contig, at, at + 1, total / np.bincount(where))


@dataclass(frozen=True)
class Extras:
    """What `explain` writes besides -o: logos of records (`plots`, of `ids` or the `top` by log-odds) and motifs
    (`motifs`, compared with the MEME file `known`)."""

    plots: str | Path | None = None
    ids: Sequence[str] | None = None
    top: int = motifs.TOP_RECORDS
    motifs: str | Path | None = None
    known: str | Path | None = None


def explain(model_path: str | Path, source: RecordSource, output: str | Path, method: str = "gradient",
            class_name: str | None = None, start: int | None = None, end: int | None = None,
            extras: Extras | None = None, batch_size: int = BATCH_SIZE, device: str = "auto", rc: bool | None = None,
            max_passes: int = MAX_ISM_PASSES, seed: int = 0, format: str | None = None,
            precision: str = "auto") -> list[Explanation]:
    """`genomix explain`: attributions of every record of `source` (`attribute`) written to `output` in `format`
    (`OUTPUTS`), else by its suffix (.npz, .tsv or '-', .bedgraph/.bg or .bw/.bigwig for --bed regions), with logos
    and motifs (`Extras`).

    Every record's attributions are held in memory (the NPZ and motifs need them all): give a genome as --bed
    regions, not as one record."""
    extras = extras or Extras()
    kind = _check_request(source, output, extras, method, format)
    inputs = [*source.files, str(model_path), *([str(extras.known)] if extras.known else [])]
    check_outputs([("-o", output)], inputs, folders=[("--plots", extras.plots), ("--motifs", extras.motifs)])
    known = motifs.read_known(extras.known) if extras.known else None
    model = load_model(model_path)
    records = list(source.records())
    if not records:
        raise GenomixError(f"no records to explain in {', '.join(source.names)}")
    if extras.ids and not set(extras.ids) <= {r.id for r in records}:
        raise GenomixError(f"--ids: no record {', '.join(sorted(set(extras.ids) - {r.id for r in records})[:5])} "
                           "among the inputs")
    explanations = attribute(model, records, method, class_name, start, end, batch_size, device, rc, seed, max_passes,
                             precision)
    with ExitStack() as stack:  # all or nothing: the extras' folders fill, then -o appears, once all are written
        if kind == "npz":
            write_npz(explanations, output, model.classes, method, stack, inputs)
        elif kind == "tsv":
            write_tsv(explanations, output, model.classes, stack, inputs)
        else:
            description = f"{method} attributions of {Path(model_path).name} (log-odds)"
            write_track(explanations, output, Genome(source.reference).contigs, description, kind, stack, inputs)
        _write_extras(explanations, extras, known, model.classes, method, inputs, stack)
    console.log(f"wrote {method} attributions of {len(explanations):,} records to {output}")
    return explanations


def _check_request(source: RecordSource, output: str | Path, extras: Extras, method: str, chosen: str | None) -> str:
    """The output's format, once the inputs, the output, the extras and the libraries they need make sense
    together."""
    source.require("explain", genomes=False)
    for wanted, modules, what in ((method == "ig", ["tangermeme"], "--method ig"),
                                  (extras.plots is not None, ["logomaker"], "--plots"),
                                  (extras.motifs is not None, ["modiscolite", "memelite", "logomaker"], "--motifs")):
        if wanted:
            require(modules, "explain", what)
    if extras.known is not None and extras.motifs is None:
        raise GenomixError("--known compares the motifs of --motifs DIR with known ones: give --motifs too")
    kind = output_format(output, OUTPUTS, "tsv", chosen=chosen)
    if kind in TRACKS and not source.bed:
        raise GenomixError(f"{output}: a bedGraph or bigWig needs genome coordinates: give --bed regions with "
                           "--reference")
    return kind


def _write_extras(explanations: list[Explanation], extras: Extras, known: dict | None, classes: list[str],
                  method: str, inputs: list[str], stack: ExitStack) -> None:
    """The logos of --plots and the motifs of --motifs (matched with --known), into folders that fill when
    `stack` closes."""
    if extras.plots is not None:
        folder = stack.enter_context(output_folder(extras.plots, "--plots"))
        drawn = motifs.plot_records(explanations, folder, classes, method, extras.ids, extras.top, inputs)
        console.log(f"drew {len(drawn)} logos in {extras.plots}")
    if extras.motifs is not None:
        found = motifs.find_motifs(explanations)
        found = motifs.match_known(found, known) if known else found
        motifs.write_motifs(found, stack.enter_context(output_folder(extras.motifs, "--motifs")), inputs)
        console.log(f"found {len(found)} motifs ({', '.join(f'{m.name} {m.consensus}' for m in found) or 'none'}) "
                    f"in {extras.motifs}")
