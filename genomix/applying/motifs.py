"""Pictures and motifs of attributions (`genomix.applying.explaining`): sequence logos of records, and the seqlets
of many records clustered into motifs, written as MEME PWMs with logos and compared with known motifs.

Libraries rather than new code: logos are drawn by logomaker (letters scaled by attribution, as in the DeepLIFT
and TF-MoDISco papers); seqlets are called and clustered by TF-MoDISco-lite (`modiscolite.tfmodisco.TFMoDISco`,
the maintained implementation), from the records' hypothetical contributions; motifs are compared with a MEME
file of known ones by memelite's TOMTOM. Every file is written atomically.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomix.applying.attributions import Explanation
from genomix.errors import GenomixError
from genomix.io.files import atomic_path, safe_names

BASES = "ACGT"
TOP_RECORDS = 10  # records drawn by --plots without --ids: the highest log-odds of their class
TRIM = 0.3  # a motif is trimmed to the span whose positions carry at least this share of its top contribution
MIN_SEQLETS = 20  # seqlets a metacluster (and a motif) needs; TF-MoDISco's own default, 100, suits genome-wide sets


def draw_logo(matrix: np.ndarray, title: str, path: Path, inputs: Sequence[str] = ()) -> None:
    """A PNG logo of a (L, 4) matrix of letter heights (negative letters below the axis)."""
    import logomaker  # imported here: only pictures need it (and matplotlib)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    figure, axes = plt.subplots(figsize=(min(60.0, max(7.0, len(matrix) / 6)), 2.2))
    logomaker.Logo(pd.DataFrame(matrix, columns=list(BASES)), ax=axes, color_scheme="classic")
    axes.set_title(title, fontsize=8)
    axes.set_xlabel("position")
    figure.tight_layout()
    with atomic_path(path, inputs) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def plot_records(explanations: Sequence[Explanation], folder: Path, classes: Sequence[str], method: str,
                 ids: Sequence[str] | None = None, top: int = TOP_RECORDS, inputs: Sequence[str] = ()) -> list[Path]:
    """A logo per record (those of `ids`, else the `top` of highest log-odds): each base's letter scaled by its
    score, in a file named by its id (`safe_names`: ids that differ only in unsafe characters get files of their
    own)."""
    if ids:
        chosen = [e for e in explanations if e.id in set(ids)]
    else:
        chosen = sorted(explanations, key=lambda e: -e.log_odds)[:top]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for e, name in zip(chosen, safe_names([e.id for e in chosen])):
        path = folder / f"{name}.png"
        title = (f"{e.id}: {method} attributions to log-odds of {classes[e.target]} ({e.log_odds:+.2f}), "
                 f"bases {e.start}-{e.start + len(e.seq)}")
        draw_logo(e.one_hot * e.scores[:, None], title, path, inputs)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Motif:
    """A motif found in the attributions: the PPM of its seqlets (trimmed, (w, 4)), their mean contributions,
    how many seqlets it rests on, and its best match among known motifs where they were given."""

    name: str
    ppm: np.ndarray
    contributions: np.ndarray
    seqlets: int
    match: str | None = None
    match_p: float | None = None

    @property
    def consensus(self) -> str:
        return "".join(BASES[i] for i in self.ppm.argmax(1))


def _trimmed(pattern, name: str) -> Motif:
    contributions = np.asarray(pattern.contrib_scores)
    strength = np.abs(contributions.sum(1))
    keep = np.flatnonzero(strength >= TRIM * strength.max()) if strength.max() > 0 else np.arange(len(strength))
    span = slice(int(keep[0]), int(keep[-1]) + 1)
    return Motif(name, np.asarray(pattern.sequence)[span], contributions[span], len(pattern.seqlets))


def find_motifs(explanations: Sequence[Explanation], min_seqlets: int = MIN_SEQLETS) -> list[Motif]:
    """Seqlets of high attribution clustered into motifs by TF-MoDISco-lite: `pos_N` (bases that raise the class's
    log-odds) and `neg_N` (that lower it), most seqlets first. Records of several lengths are padded with zeros
    (no base, no contribution)."""
    from modiscolite.tfmodisco import TFMoDISco  # imported here: numba and igraph take seconds to load

    width = max(len(e.seq) for e in explanations)
    one_hot = np.zeros((len(explanations), width, 4), dtype=np.float32)
    hypothetical = np.zeros_like(one_hot)
    for i, e in enumerate(explanations):
        one_hot[i, : len(e.seq)] = e.one_hot
        hypothetical[i, : len(e.seq)] = e.hypothetical
    window = min(21, max(7, width // 6))  # TF-MoDISco's 21 (and flank 10) suit kilobase records; promoters are short
    flank = window // 3
    positive, negative = TFMoDISco(one_hot, hypothetical, sliding_window_size=window, flank_size=flank,
                                   min_metacluster_size=min_seqlets, final_min_cluster_size=min_seqlets,
                                   trim_to_window_size=min(30, window + 2 * flank), initial_flank_to_add=flank)
    return [_trimmed(p, f"{sign}_{i + 1}") for sign, patterns in (("pos", positive), ("neg", negative))
            for i, p in enumerate(patterns or [])]


def read_known(path: str | Path) -> dict[str, np.ndarray]:
    """The motifs of a MEME file, name → PPM (w, 4)."""
    from memelite.io import read_meme

    try:
        known = read_meme(str(path))
    except (OSError, ValueError, AttributeError) as err:
        raise GenomixError(f"--known {path}: cannot read it as a MEME motif file ({err})") from None
    if not known:
        raise GenomixError(f"--known {path}: no motifs in it (MEME format: MOTIF lines and letter-probability "
                           "matrices)")
    return {name: pwm.T for name, pwm in known.items()}


def match_known(motifs: Sequence[Motif], known: dict[str, np.ndarray]) -> list[Motif]:
    """Each motif with its best TOMTOM match (either strand) among the known motifs and that match's p-value."""
    from memelite.tomtom import tomtom

    if not motifs:
        return []
    with warnings.catch_warnings():  # p-values against a handful of targets: TOMTOM warns; the table says so
        warnings.simplefilter("ignore")
        p_values = tomtom([m.ppm.T for m in motifs], [ppm.T for ppm in known.values()])[0]  # (4, w) each
    names = list(known)
    return [Motif(m.name, m.ppm, m.contributions, m.seqlets, names[int(np.argmin(p))], float(np.min(p)))
            for m, p in zip(motifs, p_values)]


def write_motifs(motifs: Sequence[Motif], folder: Path, inputs: Sequence[str] = ()) -> None:
    """motifs.meme (the PPMs, nsites = seqlets), motifs.tsv (name, seqlets, width, consensus, best known match and
    its p-value) and a contribution logo per motif, NAME.png."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "motifs.meme", inputs) as tmp, open(tmp, "w") as out:
        out.write("MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\nBackground letter frequencies\n"
                  "A 0.25 C 0.25 G 0.25 T 0.25\n\n")
        for m in motifs:
            rows = "".join(" ".join(f"{p:.6f}" for p in row) + "\n" for row in m.ppm)
            out.write(f"MOTIF {m.name}\nletter-probability matrix: alength= 4 w= {len(m.ppm)} nsites= {m.seqlets} "
                      f"E= 0\n{rows}\n")
    with atomic_path(folder / "motifs.tsv", inputs) as tmp, open(tmp, "w") as out:
        out.write("name\tseqlets\twidth\tconsensus\tknown_match\tknown_p\n")
        for m in motifs:
            p = "" if m.match_p is None else f"{m.match_p:.3g}"
            out.write(f"{m.name}\t{m.seqlets}\t{len(m.ppm)}\t{m.consensus}\t{m.match or ''}\t{p}\n")
    for m in motifs:
        draw_logo(m.contributions, f"{m.name}: {m.seqlets} seqlets, consensus {m.consensus}"
                  + (f", best known match {m.match} (p = {m.match_p:.2g})" if m.match else ""),
                  folder / f"{m.name}.png", inputs)
