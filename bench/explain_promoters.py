"""What a trained promoter model looks at: `genomix explain` on the test promoters of a real set.

For the positives of the test split: ISM (on the first --ism-records), gradient × input (all) and integrated
gradients (the first --ig-records); the mean attribution profile along the window and where it peaks, relative
to the transcription start given by --tss; the Spearman correlation of each record's per-base scores between
ISM and the gradient methods; and the motifs TF-MoDISco-lite finds in the attributions, compared (TOMTOM) with
the textbook consensus of the promoter elements of the organism. Where the known elements sit is measured too:
the position of each promoter's best match to the -10 box (TATAAT) or the TATA box (TATAAA). Motifs are also
sought in the gradient attributions of the promoters of both splits (more seqlets; nothing is evaluated on them).

    python bench/explain_promoters.py --model ecoli.gmx --data ../shared/data/ecoli_sigma70_promoters \\
        --positive promoter --tss 60 --organism ecoli --out docs/explain/ecoli_sigma70
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from genomix.applying import motifs
from genomix.applying.explaining import attribute
from genomix.console import console as genomix_console
from genomix.io.reading import read_inputs
from genomix.models.modelfile import load_model

from provenance import code_version

ELEMENTS = {  # textbook consensus sequences of promoter elements, as PPMs for TOMTOM
    "ecoli": {"sigma70_-10_box": "TATAAT", "sigma70_-35_box": "TTGACA", "extended_-10_TGn": "TGNTATAAT",
              "UP_element": "AAAWWTWTTTTNNNAAANNN", "discriminator_GGG": "GGG"},
    "human": {"TATA_box": "TATAAAA", "CCAAT_box": "GGCCAATCT", "GC_box_SP1": "GGGGCGGGG", "ETS_GABPA": "CCGGAAGT",
              "NRF1": "GCGCATGCGC", "YY1": "AAGATGGCGGC", "CREB_CRE": "TGACGTCA", "Inr": "TCAGTT",
              "NFY_CCAAT_rev": "ATTGGC"},
}
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "W": "AT", "S": "CG", "N": "ACGT", "Y": "CT", "R": "AG"}
BOX = {"ecoli": "TATAAT", "human": "TATAAA"}


def ppm(consensus: str) -> np.ndarray:
    rows = np.full((len(consensus), 4), 0.01)
    for i, letter in enumerate(consensus):
        for base in IUPAC[letter]:
            rows[i, "ACGT".index(base)] = 0.97 / len(IUPAC[letter])
    return rows / rows.sum(1, keepdims=True)


def best_box_starts(seqs: list[str], box: str) -> np.ndarray:
    """Start of each sequence's best match to `box` (most matching letters; the first of ties)."""
    starts = []
    for seq in seqs:
        matches = [sum(a == b for a, b in zip(seq[i : i + len(box)], box)) for i in range(len(seq) - len(box) + 1)]
        starts.append(int(np.argmax(matches)))
    return np.array(starts)


def profile_figure(profiles: dict[str, np.ndarray], tss: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3))
    for name, values in profiles.items():
        axes.plot(np.arange(len(values)) - tss, values / np.abs(values).max(), label=name)
    axes.axvline(0, color="grey", lw=0.8)
    axes.set_xlabel("position relative to the TSS")
    axes.set_ylabel("mean score (scaled to max 1)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summarise_motifs(found: list[motifs.Motif], folder: Path, organism: str) -> list[dict]:
    known = {name: ppm(seq) for name, seq in ELEMENTS[organism].items()}
    matched = motifs.match_known(found, known)
    motifs.write_motifs(matched, folder)
    return [{"name": m.name, "seqlets": m.seqlets, "consensus": m.consensus, "best_element": m.match,
             "tomtom_p": m.match_p} for m in matched]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="Folder with test.fa.gz")
    parser.add_argument("--positive", required=True, help="Label of the promoters")
    parser.add_argument("--tss", type=int, required=True, help="0-based index of the TSS in each window")
    parser.add_argument("--organism", choices=sorted(ELEMENTS), required=True)
    parser.add_argument("--out", required=True, help="Folder for the motifs and figures")
    parser.add_argument("--ism-records", type=int, default=1000)
    parser.add_argument("--ig-records", type=int, default=100)
    parser.add_argument("--logo-before", type=int, default=40, help="Mean logo: bases before the TSS")
    parser.add_argument("--logo-after", type=int, default=10, help="Mean logo: bases from the TSS on")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    genomix_console.quiet = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    promoters = [r for r in read_inputs([str(Path(args.data) / "test.fa.gz")]) if r.label == args.positive]
    runs, seconds = {}, {}
    for method, count in (("gradient", len(promoters)), ("ism", args.ism_records), ("ig", args.ig_records)):
        started = time.perf_counter()
        runs[method] = attribute(model, promoters[:count], method, class_name=args.positive, device="cpu",
                                 max_passes=10**12)
        seconds[method] = round(time.perf_counter() - started, 1)
    profiles = {m: np.stack([e.scores for e in runs[m]]).mean(0) for m in ("gradient", "ism", "ig")}
    peaks = {m: int(np.argmax(p)) - args.tss for m, p in profiles.items()}
    n_ism = len(runs["ism"])
    agreement = {f"ism_vs_{m}": float(np.median([spearmanr(a.scores, b.scores)[0] for a, b in
                                                 zip(runs["ism"], runs[m])])) for m in ("gradient", "ig")}
    profile_figure(profiles, args.tss, out / "profile.png", f"{Path(args.data).name}: mean attribution of "
                   f"{len(promoters)} test promoters ({n_ism} for ISM, {len(runs['ig'])} for ig)")
    for method in ("ism", "gradient"):  # the mean contribution of each base at each position, around the TSS
        mean = np.stack([e.one_hot * e.scores[:, None] for e in runs[method]]).mean(0)
        lo = max(0, args.tss - args.logo_before)
        motifs.draw_logo(mean[lo : args.tss + args.logo_after], f"{Path(args.data).name}: mean {method} contribution "
                         f"of {len(runs[method])} test promoters, positions {lo - args.tss} to "
                         f"{args.logo_after - 1} (TSS at 0)", out / f"mean_logo_{method}.png")
    box_starts = best_box_starts([r.seq for r in promoters], BOX[args.organism])
    found = {}
    every = [r for split in ("train", "test") for r in read_inputs([str(Path(args.data) / f"{split}.fa.gz")])
             if r.label == args.positive]
    runs["gradient_train_and_test"] = attribute(model, every, "gradient", class_name=args.positive, device="cpu")
    for method in ("gradient", "ism", "gradient_train_and_test"):
        started = time.perf_counter()
        found[method] = summarise_motifs(motifs.find_motifs(runs[method]), out / method, args.organism)
        seconds[f"motifs_{method}"] = round(time.perf_counter() - started, 1)
    print(json.dumps({
        "code": code_version(), "model": args.model, "set": Path(args.data).name, "promoters": len(promoters),
        "records": {m: len(r) for m, r in runs.items()}, "seconds": seconds, "tss_index": args.tss,
        "profile_peak_relative_to_tss": peaks,
        "profile_top5_relative_to_tss": {m: (np.argsort(-p)[:5] - args.tss).tolist() for m, p in profiles.items()},
        f"best_{BOX[args.organism]}_match_start_mode_relative_to_tss": int(np.bincount(box_starts).argmax())
        - args.tss,
        "median_spearman": agreement, "motifs": found,
    }, indent=2))


if __name__ == "__main__":
    main()
