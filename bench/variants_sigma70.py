"""Do substitutions in the -10 boxes of real E. coli σ70 promoters lower a model's promoter probability more
than substitutions elsewhere in the same promoters? `genomix variants` on the K-12 W3110 genome.

1. The test promoters of ecoli_sigma70_promoters (81 bases, -60..+20 around the transcription start, so +1 is
   base 61: RegulonDB's TSS coordinate in each header lands there wherever the W3110 and MG1655 coordinates
   agree) are located in the W3110 genome by exact match, on either strand.
2. Each promoter's -10 box is the hexamer closest to TATAAT (most matching bases; ties: closest to -12..-7)
   that starts between -17 and -8 (0-based 43..52); a promoter whose best hexamer matches fewer than 4 bases
   has no recognisable box and is left out.
3. The VCF (genome coordinates, forward strand): every substitution of the 6 box bases (18), and as many
   substitutions at random positions of the same 81-base window outside the box.
4. `genomix variants MODEL --vcf ... --reference ...` scores them on 81-base windows centred on each variant.
   The model was trained on promoters in their own orientation and reads one strand, so a promoter on the
   reverse strand of the genome is read the wrong way round by default: run A (all promoters, --rc: both
   strands averaged), run B (forward-strand promoters only, the model's own strand). Control C: the same
   substitutions scored in the promoter's own 81-base window (`genomix.applying.effects.substitution_effects`, the
   core of `explain --method ism`), where only the substituted base differs between the groups.

Figures: promoters found, boxes found, per run and group (box; the box substitutions of a base that matches
TATAAT, which break the consensus, where the others may move towards it; elsewhere) the mean change in the
promoter log-odds and the mean reference probability, and the AUROC of (minus the change) between box (or
consensus-base) substitutions and those elsewhere, with the one-sided Mann-Whitney p-value of the same
comparison.

    python bench/variants_sigma70.py --model ecoli_sigma70.gmx     # a model trained on the train split only
    python bench/variants_sigma70.py                               # trains one first (default settings, seed 0)
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score

from genomix.applying.effects import BASES, substitution_effects
from genomix.applying.scoring import Scorer
from genomix.models.modelfile import load_model
from genomix.sequences.tokens import encode

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TSS = 60  # 0-based index of +1 in the 81-base windows
CONSENSUS = "TATAAT"
BOX_STARTS = range(TSS - 17, TSS - 7)  # hexamers starting at -17 … -8
MIN_MATCHES = 4
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def reverse_complement(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def read_fasta(path: Path) -> list[tuple[str, str]]:
    """(header, sequence) of each record of a gzipped FASTA of one-line sequences."""
    with gzip.open(path, "rt") as file:
        lines = file.read().split("\n")
    return [(lines[i][1:], lines[i + 1].strip().upper()) for i in range(0, len(lines) - 1, 2)]


def minus_ten_box(seq: str) -> int | None:
    """Start of the -10 box (see the module docstring), or None."""
    def key(start: int) -> tuple[int, int]:
        matches = sum(a == b for a, b in zip(seq[start : start + 6], CONSENSUS))
        return matches, -abs(start - (TSS - 12))

    best = max(BOX_STARTS, key=key)
    return best if key(best)[0] >= MIN_MATCHES else None


def locate(promoters: list[tuple[str, str]], genome: str) -> tuple[list[dict], int]:
    """Each promoter found once in the genome: id, sequence, strand, genome start (0-based, forward strand);
    and how many matched more than one place (the first kept)."""
    found, repeated = [], 0
    for header, seq in promoters:
        hits = [(strand, at) for strand, text in (("+", seq), ("-", reverse_complement(seq)))
                for at in _all(genome, text)]
        repeated += len(hits) > 1
        if hits:
            found.append({"id": header.split()[0], "seq": seq, "strand": hits[0][0], "start": hits[0][1]})
    return found, repeated


def _all(text: str, word: str) -> list[int]:
    hits, at = [], text.find(word)
    while at >= 0:
        hits.append(at)
        at = text.find(word, at + 1)
    return hits


def substitutions(promoter: dict, box: int, rng: np.random.Generator) -> list[dict]:
    """The box's 18 substitutions and 18 at random positions elsewhere in the window, in promoter coordinates
    (index, alt base) and genome coordinates (1-based POS, REF, ALT on the forward strand)."""
    seq = promoter["seq"]
    inside = [(i, b) for i in range(box, box + 6) for b in BASES if b != seq[i]]
    outside_positions = [i for i in range(len(seq)) if not box <= i < box + 6]
    picks = rng.choice(outside_positions, size=len(inside))
    outside = [(int(i), str(rng.choice([b for b in BASES if b != seq[i]]))) for i in picks]
    variants = []
    for group, items in (("box", inside), ("elsewhere", outside)):
        for i, alt in items:
            forward = promoter["strand"] == "+"
            at = promoter["start"] + (i if forward else len(seq) - 1 - i)
            ref, alt_forward = (seq[i], alt) if forward else (seq[i].translate(COMPLEMENT), alt.translate(COMPLEMENT))
            consensus_base = group == "box" and seq[i] == CONSENSUS[i - box]
            variants.append({"promoter": promoter["id"], "group": group, "index": i, "alt": alt,
                             "consensus_base": consensus_base,
                             "pos": at + 1, "vcf_ref": ref, "vcf_alt": alt_forward, "strand": promoter["strand"]})
    return variants


def write_vcf(path: Path, contig: str, variants: list[dict]) -> None:
    rows = sorted(enumerate(variants), key=lambda iv: (iv[1]["pos"], iv[0]))
    with open(path, "w") as out:
        out.write(f"##fileformat=VCFv4.2\n##contig=<ID={contig}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for number, v in rows:
            out.write(f"{contig}\t{v['pos']}\tv{number}\t{v['vcf_ref']}\t{v['vcf_alt']}\t.\t.\t.\n")


def run_variants(model: Path, vcf: Path, reference: Path, out: Path, rc: bool) -> dict[int, tuple[float, float]]:
    """`genomix variants` as a user runs it: variant number → (change in the promoter log-odds, reference p)."""
    command = [sys.executable, "-m", "genomix", "variants", str(model), "--vcf", str(vcf), "--reference",
               str(reference), "-o", str(out), "--device", "cpu", "--threads", "1", "--rc" if rc else "--no-rc"]
    subprocess.run(command, check=True, cwd=REPO)
    with open(out) as file:
        return {int(r["id"][1:]): (float(r["log_odds_promoter"]), float(r["ref_promoter"]))
                for r in csv.DictReader(file, delimiter="\t")}


def summarise(name: str, variants: list[dict], scores: dict[int, tuple[float, float]]) -> dict:
    """Per group (box; box substitutions of a base that matches TATAAT; elsewhere): count, mean and median
    change, mean reference p; the AUROC of minus the change, box (or consensus base) against elsewhere."""
    groups = {"box": lambda v: v["group"] == "box", "box_consensus_base": lambda v: v["consensus_base"],
              "elsewhere": lambda v: v["group"] == "elsewhere"}
    result: dict = {"run": name}
    drops = {}
    for group, member in groups.items():
        rows = [scores[i] for i, v in enumerate(variants) if member(v) and i in scores]
        effects = np.array([r[0] for r in rows])
        result[group] = {"variants": len(rows), "mean_change": float(effects.mean()),
                         "median_change": float(np.median(effects)), "mean_ref_p": float(np.mean([r[1] for r in rows]))}
        drops[group] = list(-effects)
    for group in ("box", "box_consensus_base"):
        labels = [True] * len(drops[group]) + [False] * len(drops["elsewhere"])
        result[f"auroc_{group}_vs_elsewhere"] = float(roc_auc_score(labels, drops[group] + drops["elsewhere"]))
        result[f"p_{group}_vs_elsewhere"] = float(mannwhitneyu(drops[group], drops["elsewhere"],
                                                               alternative="greater").pvalue)
    return result


def promoter_frame(model_path: Path, variants: list[dict], sequences: dict[str, str],
                   boxes: dict[str, int]) -> tuple[dict[int, tuple[float, float]], dict[str, float]]:
    """Control C: each substitution scored in its promoter's own window (the ISM core); and the mean effect of
    all 3 substitutions at each position, over the promoters aligned on their -10 box, in 5-base bins."""
    model = load_model(model_path)
    scorer = Scorer.of(model, device="cpu")
    target = model.classes.index("promoter")
    scores, offsets = {}, []
    for pid, seq in sequences.items():
        table = substitution_effects(scorer, encode(seq), target)
        ref_p = float(scorer.log_probs([encode(seq)])[0, target].exp())
        for number, v in enumerate(variants):
            if v["promoter"] == pid:
                scores[number] = (float(table[v["index"], BASES.index(v["alt"])]), ref_p)
        offsets += [(i - boxes[pid], table[i].sum() / 3) for i in range(len(seq))]  # own base: 0
    bins: dict[str, list[float]] = {}
    for offset, effect in offsets:
        low = 5 * (offset // 5)
        bins.setdefault(f"{low:+d}..{low + 4:+d}", []).append(effect)
    return scores, {name: float(np.mean(values)) for name, values in sorted(bins.items(), key=lambda kv:
                                                                             int(kv[0].split("..")[0]))}


def locate_boxes(data: Path, seed: int) -> tuple[dict, list[dict], list[dict], str, str]:
    """(figures on the promoters, those with a -10 box, their substitutions, the genome, its contig name)."""
    with gzip.open(data / "genomes" / "escherichia_coli_K12_W3110.fna.gz", "rt") as file:
        header, *rest = file.read().split("\n")
    genome = "".join(rest).upper()
    promoters = [p for p in read_fasta(data / "ecoli_sigma70_promoters" / "test.fa.gz") if "label=promoter" in p[0]]
    found, repeated = locate(promoters, genome)
    rng = np.random.default_rng(seed)
    boxes = {p["id"]: minus_ten_box(p["seq"]) for p in found}
    with_box = [p | {"box": boxes[p["id"]]} for p in found if boxes[p["id"]] is not None]
    variants = [v for p in with_box for v in substitutions(p, boxes[p["id"]], rng)]
    matches = [sum(a == b for a, b in zip(p["seq"][boxes[p["id"]] :][:6], CONSENSUS)) for p in with_box]
    figures = {"test_promoters": len(promoters), "found": len(found), "found_more_than_once": repeated,
               "forward_strand": sum(p["strand"] == "+" for p in found), "with_minus_ten_box": len(with_box),
               "box_matches_to_TATAAT": dict(enumerate(np.bincount(matches, minlength=7).tolist()))}
    return figures, with_box, variants, genome, header[1:].split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model trained on the train split (default: train one)")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random 'elsewhere' substitutions")
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    figures, with_box, variants, genome, contig = locate_boxes(args.data, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        reference = work / "W3110.fa"  # plain FASTA: the shared file is gzip, which cannot be read by position
        reference.write_text(f">{contig}\n{genome}\n")
        model = args.model or _train(args.data, work)
        write_vcf(work / "all.vcf", contig, variants)
        forward = [i for i, v in enumerate(variants) if v["strand"] == "+"]
        write_vcf(work / "forward.vcf", contig, [variants[i] for i in forward])
        run_a = run_variants(model, work / "all.vcf", reference, work / "all.tsv", rc=True)
        run_b = run_variants(model, work / "forward.vcf", reference, work / "forward.tsv", rc=False)
        run_c, profile = promoter_frame(model, variants, {p["id"]: p["seq"] for p in with_box},
                                        {p["id"]: p["box"] for p in with_box})
    figures["runs"] = [summarise("A: all promoters, --rc", variants, run_a),
                       summarise("B: forward-strand promoters, one strand", variants,
                                 {forward[j]: s for j, s in run_b.items()}),
                       summarise("C: promoter's own window (ISM core)", variants, run_c)]
    figures["mean_effect_by_offset_from_box_start"] = profile
    figures["model"] = args.model.name if args.model else "trained here: default settings, seed 0, train split"
    print(json.dumps(figures, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


def _train(data: Path, work: Path) -> Path:
    model = work / "ecoli_sigma70.gmx"
    subprocess.run([sys.executable, "-m", "genomix", "train", str(data / "ecoli_sigma70_promoters" / "train.fa.gz"),
                    "-o", str(model), "--seed", "0", "--device", "cpu"], check=True, cwd=REPO)
    return model


if __name__ == "__main__":
    main()
