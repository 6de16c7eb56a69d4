"""CPU inference against the hardware: the matmul rate at the model's shapes, the forward's rate, end to end.

One run measures, on the CPU, for the default model (`paramixer-cdil`, 150-base reads, batches of 64):
- the rate of torch's matrix products at the model's layer shapes, fp32 and bf16 (the ceiling);
- FLOPs per read and strand (torch.utils.flop_counter, plus the factor products, which it does not see);
- the bare forward's reads/s and GFLOP/s, fp32 and bf16, at 1 and 2 threads, and its share of the matmul rate;
- torch.compile (inductor) of the whole forward: compile seconds and speed-up (--no-compile skips it);
- `genomix predict` end to end on a FASTQ of 150-base windows of a genome (plain and gzipped; the default model
  and `kmer`), `scan` of a genome prefix, `embed` and `variants`, each beside the bare forward of the same pieces;
- with --agreement MODEL=FASTA (repeatable): bf16 against fp32 on real data: the share of records whose called
  class agrees and the largest probability move;
- with --int8 MODEL=FASTA alone: dynamic int8 quantisation of the Linear layers (each quantized engine this
  torch has) against fp32 and bf16: the bare forward's rate, alternating, 1 thread, and the agreement with fp32
  on the FASTA's records and on 150-base reads cut from them; it writes only the JSON's `int8` key and its own
  table in docs/PERFORMANCE.md;
- with --kraken2 (where kraken2 is installed): Kraken2 side by side, with a database of the training regions of
  the read genome and a second species: its reads/s on the predict FASTQ beside genomix predict's, and both
  tools' accuracy on reads of the regions they trained on and of the held-out regions (a small model of the
  default architecture trained on the same regions, as `train --genome` does). --kraken2-only runs just that
  and replaces only the `kraken2` figures.
It prints a table, writes docs/inference_cpu.json and the table into docs/PERFORMANCE.md. Speed does not depend
on the weights, so the speed rows use untrained models; the agreement rows need trained ones.

    python bench/inference.py                      # the figures in docs/PERFORMANCE.md
    python bench/inference.py --reads 500 --no-compile --no-doc   # a quick look
    python bench/inference.py --kraken2-only       # the Kraken2 figures alone
    python bench/inference.py --agreement sigma70.gmx=../shared/data/ecoli_sigma70_promoters/test.fa.gz \\
        --agreement species.gmx=reads:../shared/data/bacteria_species_genome_windows/test.fa.gz
    python bench/inference.py --int8 mt.gmx=data_samples/mouse_tata_test.fa   # int8 only
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import kraken2_side
import numpy as np
import torch
import torch.nn.functional as F

from genomix.applying.embedding import embed
from genomix.applying.predicting import Outputs, predict
from genomix.applying.scanning import scan
from genomix.applying.scoring import Scorer
from genomix.applying.variants import score_variants
from genomix.console import console as genomix_console
from genomix.console import fast_cpu_bf16, reuse_large_allocations
from genomix.fitting.training import TrainSettings, fit
from genomix.io.genomes import Genome, GenomeSet
from genomix.io.reading import Record, read_inputs
from genomix.io.sources import RecordSource
from genomix.models import DEFAULT_MODEL, create_model
from genomix.models.modelfile import TrainedModel, load_model, save_model
from genomix.models.paramixer import Paramixer, factor_shifts, num_factors
from genomix.sequences.tokens import encode

from provenance import code_version

REPO = Path(__file__).resolve().parents[1]
GENOMES = REPO.parent / "shared/data/genomes"
READ_GENOME = GENOMES / "corynebacterium_diphtheriae_NCTC11397.fna.gz"
SCAN_GENOME = GENOMES / "escherichia_coli_K12_W3110.fna.gz"
SIDE_GENOMES = {"corynebacterium_diphtheriae": READ_GENOME,  # the read genome and a second species, for accuracy
                "aquifex_aeolicus": GENOMES / "aquifex_aeolicus_VF5.fna.gz"}
DOC_MARKS = ("<!-- inference_cpu: start -->", "<!-- inference_cpu: end -->")
INT8_MARKS = ("<!-- inference_cpu_int8: start -->", "<!-- inference_cpu_int8: end -->")
KRAKEN2_MARKS = ("<!-- inference_kraken2: start -->", "<!-- inference_kraken2: end -->")
INT8_ENGINES = [e for e in ("x86", "fbgemm", "onednn") if e in torch.backends.quantized.supported_engines]
READ_LEN, BATCH = 150, 64
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cast(dtype: torch.dtype):
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast("cpu", dtype=dtype)


def best_rate(fn: Callable[[], object], work: float, seconds: float = 1.5) -> float:
    """work / s of fn: the best of repeated timings (after a warm-up) over about `seconds`; on a shared machine
    the best is the least disturbed."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return work / best


def layer_shapes(model: Paramixer) -> list[tuple[int, int]]:
    """(in, out) of every matrix product a forward runs, per position: the Linear layers and the stem."""
    shapes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    stem = getattr(model, "stem", None)
    return shapes + ([(stem.in_channels * stem.kernel_size[0], stem.out_channels)] if stem is not None else [])


@torch.no_grad()
def matmul_rate(model: Paramixer, dtype: torch.dtype) -> float:
    """GFLOP/s of torch's matrix products at the model's shapes (B·N rows), all of them in turn."""
    rows, shapes = BATCH * READ_LEN, layer_shapes(model)
    xs = [torch.randn(rows, i).to(dtype) for i, _ in shapes]
    ws = [torch.randn(o, i).to(dtype) for i, o in shapes]
    flops = sum(2 * rows * i * o for i, o in shapes)
    return best_rate(lambda: [F.linear(x, w) for x, w in zip(xs, ws)], flops) / 1e9


def flops_per_read(model: Paramixer) -> dict:
    """FLOPs of one 150-base read and strand: what the flop counter sees, and the factor products it does not
    (2·K·D per position and factor, plus the residual add)."""
    from torch.utils.flop_counter import FlopCounterMode

    tokens, lengths = torch.randint(0, 4, (BATCH, READ_LEN)), torch.full((BATCH,), READ_LEN)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(tokens, lengths)
    factors = factor_shifts(model.protocol, num_factors(model.max_len))
    dim = model.options.dim
    factor = len(model.blocks) * READ_LEN * sum(2 * len(s) * dim + dim for s in factors)
    counted = counter.get_total_flops() / BATCH
    return {"counted": counted, "factor_products": factor, "total": counted + factor}


@torch.no_grad()
def forward_rate(model: Paramixer, dtype: torch.dtype, threads: int, batches: int = 4) -> float:
    """Bare forward: read-strands per second on batches of 64 reads of 150 bases."""
    torch.set_num_threads(threads)
    tokens, lengths = torch.randint(0, 4, (BATCH, READ_LEN)), torch.full((BATCH,), READ_LEN)

    def run() -> None:
        with cast(dtype):
            for _ in range(batches):
                model(tokens, lengths)

    return best_rate(run, BATCH * batches)


@torch.no_grad()
def compiled_rate(model: Paramixer) -> dict:
    """torch.compile (inductor) of the whole fp32 forward at the full batch shape and a ragged last batch."""
    torch.set_num_threads(1)
    compiled = torch.compile(model, dynamic=False)
    result = {}
    for batch in (BATCH, 17):
        tokens, lengths = torch.randint(0, 4, (batch, READ_LEN)), torch.full((batch,), READ_LEN)
        start = time.perf_counter()
        compiled(tokens, lengths)
        result[f"compile_s_batch{batch}"] = round(time.perf_counter() - start, 1)
    tokens, lengths = torch.randint(0, 4, (BATCH, READ_LEN)), torch.full((BATCH,), READ_LEN)
    eager, fused = 0.0, 0.0
    for _ in range(3):  # alternating, each keeping its best
        eager = max(eager, best_rate(lambda: model(tokens, lengths), BATCH))
        fused = max(fused, best_rate(lambda: compiled(tokens, lengths), BATCH))
    return result | {"reads_per_s": round(fused, 1), "eager_reads_per_s": round(eager, 1),
                     "speedup": round(fused / eager, 2)}


def genome_reads(path: Path, count: int, length: int, seed: int = 0) -> list[str]:
    genome = "".join(r.seq for r in read_inputs([str(path)]))
    starts = np.random.default_rng(seed).integers(0, len(genome) - length + 1, count)
    return [genome[s : s + length] for s in starts.tolist()]


def write_fastq(reads: list[str], path: Path) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as f:
        f.writelines(f"@r{i}\n{seq}\n+\n{'I' * len(seq)}\n" for i, seq in enumerate(reads))


def untrained(name: str, max_len: int, path: Path) -> Path:
    torch.manual_seed(0)
    save_model(TrainedModel.of(create_model(name, 2, max_len=max_len), ["a", "b"]), path)
    return path


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_rate(model_path: Path, pieces: list[str], features: bool = False) -> float:
    """Pieces per second of the scoring service alone (`Scorer`), on already-encoded pieces: no reading, no
    writing."""
    scorer = Scorer.of(load_model(model_path), "cpu", rc=False)
    tokens = [encode(p) for p in pieces]
    return len(pieces) / timed(lambda: (scorer.features if features else scorer.log_probs)(tokens))


def end_to_end(args: argparse.Namespace, tmp: Path) -> list[dict]:
    """`predict` (plain and gzipped FASTQ; default model and kmer), `scan`, `embed` and `variants`, each beside
    the bare scoring of the same number of pieces, on one thread."""
    torch.set_num_threads(1)
    reads = genome_reads(READ_GENOME, args.reads, READ_LEN)
    plain, gz = tmp / "reads.fq", tmp / "reads.fq.gz"
    write_fastq(reads, plain)
    write_fastq(reads, gz)
    rows = []
    for name in (DEFAULT_MODEL, "kmer"):
        model = untrained(name, READ_LEN, tmp / f"{name}.gmx")
        bare = bare_rate(model, reads)
        for fastq in (plain, gz):
            source = RecordSource([str(fastq)])
            seconds = timed(lambda m=model, s=source: predict(m, s, Outputs(tmp / "p.tsv"), device="cpu", rc=False))
            rows.append(row(f"predict {name} {fastq.name}", len(reads) / seconds, bare, "reads/s"))
    model = tmp / f"{DEFAULT_MODEL}.gmx"
    rows.append(row("embed", len(reads) / timed(lambda: embed(model, RecordSource([str(plain)]), tmp / "e.npy",
                                                               device="cpu", rc=False)),
                    bare_rate(model, reads, features=True), "reads/s"))
    rows.append(scan_row(args, tmp, model))
    rows.append(variants_row(args, tmp, model))
    return rows


def row(what: str, rate: float, bare: float, unit: str) -> dict:
    return {"what": what, "rate": round(rate, 1), "bare_forward": round(bare, 1), "unit": unit,
            "ratio": round(rate / bare, 3)}


def genome_prefix(tmp: Path, bases: int) -> tuple[Path, str, str]:
    """The first `bases` of the scan genome's first record as a plain FASTA: (path, contig, sequence)."""
    first = next(iter(read_inputs([str(SCAN_GENOME)])))
    contig, seq = first.id, first.seq[:bases]
    path = tmp / "prefix.fa"
    path.write_text(f">{contig}\n" + "\n".join(seq[i : i + 80] for i in range(0, len(seq), 80)) + "\n")
    return path, contig, seq


def scan_row(args: argparse.Namespace, tmp: Path, model: Path) -> dict:
    path, _, seq = genome_prefix(tmp, args.scan_bases)
    summary = scan(model, path, tmp / "scan.bedgraph", device="cpu", rc=False)
    windows = summary["windows"]
    starts = np.linspace(0, len(seq) - READ_LEN, min(windows, 5000)).astype(int)
    bare = bare_rate(model, [seq[s : s + READ_LEN] for s in starts])
    return row(f"scan {args.scan_bases / 1e6:g} Mb", windows / summary["seconds"], bare, "windows/s")


def variants_row(args: argparse.Namespace, tmp: Path, model: Path) -> dict:
    """SNVs at random positions of the genome prefix; each scores its REF and ALT windows."""
    path, contig, seq = genome_prefix(tmp, args.scan_bases)
    rng = np.random.default_rng(0)
    positions = np.sort(rng.choice(np.arange(READ_LEN, len(seq) - READ_LEN), args.variants, replace=False))
    vcf = tmp / "snvs.vcf"
    with open(vcf, "w") as out:
        out.write(f"##fileformat=VCFv4.2\n##contig=<ID={contig},length={len(seq)}>\n"
                  "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for p in positions.tolist():
            ref = seq[p]
            out.write(f"{contig}\t{p + 1}\t.\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\t.\t.\t.\n")
    seconds = timed(lambda: score_variants(model, vcf, path, tmp / "v.tsv", device="cpu", rc=False))
    windows = [seq[p - READ_LEN // 2 : p - READ_LEN // 2 + READ_LEN] for p in positions.tolist()]
    return row("variants", args.variants / seconds, bare_rate(model, windows * 2) / 2, "variants/s")


def species_reads(path: Path, count: int, seed: int = 0) -> list[Record]:
    """`count` 150-base reads at random places of labelled windows, each keeping its window's label."""
    windows = [r for r in read_inputs([str(path)]) if len(r.seq) >= READ_LEN]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(windows), count)
    reads = []
    for i, w in enumerate(picks.tolist()):
        s = int(rng.integers(0, len(windows[w].seq) - READ_LEN + 1))
        reads.append(Record(f"read{i}", windows[w].seq[s : s + READ_LEN], windows[w].label))
    return reads


def agreement(spec: str, reads: int) -> dict:
    """bf16 against fp32 on MODEL=FASTA (or MODEL=reads:FASTA: `reads` 150-base reads cut from its records)."""
    model_path, data = spec.split("=", 1)
    records = species_reads(Path(data[6:]), reads) if data.startswith("reads:") else list(read_inputs([data]))
    model = load_model(model_path)
    tokens = [encode(r.seq) for r in records]
    probs = {name: Scorer.of(model, "cpu", precision=name).log_probs(tokens).exp().numpy() for name in PRECISIONS}
    same = probs["fp32"].argmax(-1) == probs["bf16"].argmax(-1)
    labels = np.array([model.classes.index(r.label) if r.label in model.classes else -1 for r in records])
    return {"model": Path(model_path).name, "data": data, "records": len(records),
            "calls_agree": round(float(same.mean()), 5), "calls_differ": int((~same).sum()),
            "max_prob_move": float(np.abs(probs["fp32"] - probs["bf16"]).max()),
            "accuracy_fp32": round(float((probs["fp32"].argmax(-1) == labels).mean()), 4),
            "accuracy_bf16": round(float((probs["bf16"].argmax(-1) == labels).mean()), 4)}


def quantized(network: torch.nn.Module, engine: str) -> torch.nn.Module:
    """A copy of `network` with its Linear layers dynamically quantized to int8 (weights per tensor, activations
    per batch), packed for `engine`, which must also be the engine when it runs."""
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return torch.ao.quantization.quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)


def int8_agreement(model: TrainedModel, data: str, records: list[Record]) -> list[dict]:
    """bf16 and int8 (each engine) against fp32 through the scoring service on `records`: the share of calls that
    agree and the largest probability move."""
    scorer, tokens = Scorer.of(model, "cpu", precision="fp32"), [encode(r.seq) for r in records]
    variants = {"bf16": dataclasses.replace(scorer, precision="bf16")}
    variants |= {f"int8 {e}": dataclasses.replace(scorer, network=quantized(scorer.network, e)) for e in INT8_ENGINES}
    fp32 = scorer.log_probs(tokens).exp().numpy()
    labels = np.array([model.classes.index(r.label) if r.label in model.classes else -1 for r in records])
    rows = []
    for name, variant in variants.items():
        torch.backends.quantized.engine = name.removeprefix("int8 ") if name.startswith("int8") else "x86"
        probs = variant.log_probs(tokens).exp().numpy()
        same = fp32.argmax(-1) == probs.argmax(-1)
        rows.append({"precision": name, "data": data, "records": len(records),
                     "calls_agree": round(float(same.mean()), 5), "calls_differ": int((~same).sum()),
                     "max_prob_move": round(float(np.abs(fp32 - probs).max()), 5),
                     "accuracy_fp32": round(float((fp32.argmax(-1) == labels).mean()), 4),
                     "accuracy": round(float((probs.argmax(-1) == labels).mean()), 4)})
    return rows


@torch.no_grad()
def int8_rates(model: torch.nn.Module, rounds: int) -> dict:
    """Bare forward, read-strands/s at 1 thread: fp32, bf16 under autocast (as `Scorer` runs it) and int8 on
    each engine, in alternating rounds, each keeping its best."""
    torch.set_num_threads(1)
    tokens, lengths = torch.randint(0, 4, (BATCH, READ_LEN)), torch.full((BATCH,), READ_LEN)
    runs: dict[str, tuple[torch.nn.Module, torch.dtype, str]] = {name: (model, dtype, "x86")
                                                                 for name, dtype in PRECISIONS.items()}
    runs |= {f"int8 {e}": (quantized(model, e), torch.float32, e) for e in INT8_ENGINES}
    rates: dict[str, float] = {}

    def forward(network: torch.nn.Module, dtype: torch.dtype) -> None:
        with cast(dtype):
            network(tokens, lengths)

    for _ in range(rounds):
        for name, (network, dtype, engine) in runs.items():
            torch.backends.quantized.engine = engine
            rate = best_rate(lambda n=network, d=dtype: forward(n, d), BATCH, seconds=1.0)
            rates[name] = max(rates.get(name, 0.0), rate)
    return {name: round(rate, 1) for name, rate in rates.items()}


def measure_int8(spec: str, rounds: int) -> dict:
    """`int8_rates` on the untrained default model (speed does not depend on the weights) and `int8_agreement`
    of MODEL=FASTA on the FASTA's records and on ten times as many 150-base reads cut at random places of them."""
    torch.manual_seed(0)
    model_path, data = spec.split("=", 1)
    trained = load_model(model_path)
    records = list(read_inputs([data]))
    report = {"code": code_version(), "torch": torch.__version__, "engines": INT8_ENGINES,
              "load_average": os.getloadavg()[0], "model": Path(model_path).name,
              "rates": int8_rates(create_model(DEFAULT_MODEL, 2, READ_LEN).eval(), rounds)}
    torch.set_num_threads(1)
    reads = species_reads(Path(data), 10 * len(records))
    report["agreement"] = (int8_agreement(trained, data, records)
                           + int8_agreement(trained, f"reads:{data}", reads))
    return report


def int8_markdown(report: dict) -> str:
    rates = report["rates"]
    lines = [f"Measured by `python bench/inference.py --int8 {report['model']}=...` (code {report['code']}, torch "
             f"{report['torch']}; load average {report['load_average']:.1f}): the bare forward of "
             f"{DEFAULT_MODEL} at 1 thread, batches of {BATCH} reads of {READ_LEN} bases, alternating; agreement "
             f"with fp32 through the scoring service on {report['model']}.", "",
             "| 1 thread, read-strands/s | " + " | ".join(rates) + " |", "|---" * (len(rates) + 1) + "|",
             "| forward | " + " | ".join(f"{r:,.0f}" for r in rates.values()) + " |", "",
             "| against fp32 | records | calls agree | differ | largest probability move | accuracy fp32 / this |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {a['precision']} on {data_name(a['data'])} | {a['records']:,} | {a['calls_agree']:.3%} | "
              f"{a['calls_differ']} | {a['max_prob_move']:.4f} | {a['accuracy_fp32']} / {a['accuracy']} |"
              for a in report["agreement"]]
    return "\n".join(lines) + "\n"
def kraken2_side_by_side(args: argparse.Namespace, tmp: Path) -> dict | None:
    """Kraken2 and genomix on the same reads, 1 thread each: reads/s on the predict FASTQ (untrained default model:
    speed does not depend on the weights) and accuracy on reads of the training and held-out regions."""
    genomes = dict(zip(SIDE_GENOMES, kraken2_side.decompressed(list(SIDE_GENOMES.values()), tmp / "genomes")))
    started = time.perf_counter()
    db = kraken2_side.build_database({c: [p] for c, p in genomes.items()}, tmp / "kraken2_db",
                                     GenomeSet.holdout_fraction)
    if db is None:
        return None
    report = {"code": code_version(), "load_average": os.getloadavg()[0], "genomes": list(genomes),
              "build_seconds": round(time.perf_counter() - started, 1), "threads": 1}
    torch.set_num_threads(1)
    fastq = tmp / "reads.fq"
    write_fastq(genome_reads(READ_GENOME, args.reads, READ_LEN), fastq)
    model = untrained(DEFAULT_MODEL, READ_LEN, tmp / "speed.gmx")
    genomix_rate, kraken = 0.0, None
    for _ in range(3):  # alternating, each keeping its best
        genomix_rate = max(genomix_rate, args.reads / timed(
            lambda: predict(model, RecordSource([str(fastq)]), Outputs(tmp / "p.tsv"), device="cpu", rc=False)))
        run = kraken2_side.classify(db, fastq)
        kraken = run if kraken is None or run["reads_per_s"] > kraken["reads_per_s"] else kraken
    report["speed"] = {"reads": args.reads, "genomix_predict_reads_per_s": round(genomix_rate, 1),
                       "kraken2_reads_per_s": round(kraken["reads_per_s"], 1),
                       "kraken2_processing_reads_per_s": round(kraken["processing_reads_per_s"], 1)}
    report["accuracy"] = side_accuracy(args, tmp, genomes, db)
    return report


def side_accuracy(args: argparse.Namespace, tmp: Path, genomes: dict[str, Path], db: Path) -> dict:
    """Both tools' accuracy (and Kraken2's unclassified share) on 150-base tiles of the training and the test
    regions of each genome; genomix's model is the default architecture trained briefly on the training regions."""
    regions = GenomeSet(tuple((c, Genome(p)) for c, p in genomes.items()), READ_LEN)
    settings = TrainSettings(arch=DEFAULT_MODEL, genome_window=READ_LEN, windows_per_epoch=args.kraken2_windows,
                             epochs=args.kraken2_epochs, lr=3e-3, batch_size=32, device="cpu", seed=1)
    started = time.perf_counter()
    model = fit(regions, settings)
    result = {"genomix_train": {"windows_per_epoch": args.kraken2_windows, "epochs": args.kraken2_epochs,
                                "seconds": round(time.perf_counter() - started, 1)}}
    scorer = Scorer.of(model, "cpu")
    for split, name in (("train", "training_regions"), ("test", "held_out_regions")):
        records = regions.tiles(split, args.kraken2_reads)
        fasta = tmp / f"{split}.fa"
        fasta.write_text("".join(f">r{i}\n{r.seq}\n" for i, r in enumerate(records)))
        calls = kraken2_side.classify(db, fasta)["calls"]
        kraken = [calls[f"r{i}"] for i in range(len(records))]
        ours = scorer.log_probs([encode(r.seq) for r in records]).argmax(-1).tolist()
        result[name] = {"reads": len(records),
                        "genomix_accuracy": round(float(np.mean([model.classes[c] == r.label
                                                                 for c, r in zip(ours, records)])), 4),
                        "kraken2_accuracy": round(float(np.mean([c == r.label for c, r in zip(kraken, records)])), 4),
                        "kraken2_unclassified": round(float(np.mean([c is None for c in kraken])), 4)}
    return result


def measure(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = create_model(DEFAULT_MODEL, 2, READ_LEN).eval()
    report: dict = {"code": code_version(), "cpu_bf16_units": fast_cpu_bf16(), "threads_available": os.cpu_count(),
                    "load_average": os.getloadavg()[0], "model": DEFAULT_MODEL, "read_len": READ_LEN, "batch": BATCH}
    report["flops_per_read"] = flops_per_read(model)
    gflop = report["flops_per_read"]["total"] / 1e9
    # Rounds alternate the matmul and the forward, each keeping its best: on a shared machine both ends of a
    # ratio then see the same quiet moments.
    matmul, forward = dict.fromkeys(PRECISIONS, 0.0), {}
    for _ in range(args.rounds):
        for threads in (1, 2):
            for name, dtype in PRECISIONS.items():
                if threads == 1:
                    torch.set_num_threads(1)
                    matmul[name] = max(matmul[name], matmul_rate(model, dtype))
                key = (name, threads)
                forward[key] = max(forward.get(key, 0.0), forward_rate(model, dtype, threads))
    report["matmul_gflops"] = {name: round(rate, 1) for name, rate in matmul.items()}
    report["forward"] = [{"precision": name, "threads": threads, "reads_per_s": round(rate, 1),
                          "gflops": round(rate * gflop, 1), "of_matmul_1_thread": round(rate * gflop / matmul[name], 3)}
                         for (name, threads), rate in forward.items()]
    if args.compile:
        report["compiled_fp32"] = compiled_rate(model)
    with tempfile.TemporaryDirectory() as tmp:
        report["end_to_end"] = end_to_end(args, Path(tmp))
    report["agreement"] = [agreement(spec, args.agreement_reads) for spec in args.agreement]
    if args.kraken2:
        report["kraken2"] = measure_kraken2(args)
    return report


def measure_kraken2(args: argparse.Namespace) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        return kraken2_side_by_side(args, Path(tmp))


def kraken2_markdown(side: dict) -> str:
    speed = side["speed"]
    lines = [f"Kraken2 side by side (`python bench/inference.py --kraken2`; code {side['code']}, load average "
             f"{side['load_average']:.1f}), 1 thread each, on the "
             f"{speed['reads']:,} reads of the predict FASTQ: Kraken2 {speed['kraken2_reads_per_s']:,.0f} reads/s end "
             f"to end ({speed['kraken2_processing_reads_per_s']:,.0f} by its own timing, without loading the "
             f"database) against {speed['genomix_predict_reads_per_s']:,.0f} for `genomix predict` with the "
             f"default model. Accuracy on 150-base tiles of {' and '.join(side['genomes'])}; Kraken2's database "
             f"holds the training regions of both genomes (built in {side['build_seconds']} s), and genomix's model "
             f"({side['accuracy']['genomix_train']['epochs']} epochs of "
             f"{side['accuracy']['genomix_train']['windows_per_epoch']:,} windows, "
             f"{side['accuracy']['genomix_train']['seconds']} s) was trained on the same regions.", "",
             "| reads from | reads | genomix accuracy | Kraken2 accuracy | Kraken2 unclassified |",
             "|---|---|---|---|---|"]
    for name in ("training_regions", "held_out_regions"):
        a = side["accuracy"][name]
        lines.append(f"| {name.replace('_', ' ')} | {a['reads']:,} | {a['genomix_accuracy']:.3f} | "
                     f"{a['kraken2_accuracy']:.3f} | {a['kraken2_unclassified']:.3f} |")
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    flops = report["flops_per_read"]
    lines = [f"Measured by `python bench/inference.py` (code {report['code']}; load average "
             f"{report['load_average']:.1f}; bf16 units: {report['cpu_bf16_units']}). {report['model']}, "
             f"{report['read_len']}-base reads, batches of {report['batch']}: {flops['total'] / 1e6:.1f} MFLOP per "
             f"read and strand ({flops['factor_products'] / 1e6:.1f} of them in the factor products).", "",
             "| | fp32 | bf16 |", "|---|---|---|",
             f"| matmul at the model's shapes, 1 thread (GFLOP/s) | {report['matmul_gflops']['fp32']} | "
             f"{report['matmul_gflops']['bf16']} |"]
    for threads in (1, 2):
        cells = {f["precision"]: f for f in report["forward"] if f["threads"] == threads}
        lines.append(f"| forward, {threads} thread{'s' if threads > 1 else ''}: read-strands/s (GFLOP/s, share of "
                     f"1-thread matmul) | " + " | ".join(
                         f"{cells[p]['reads_per_s']:,.0f} ({cells[p]['gflops']}, {cells[p]['of_matmul_1_thread']:.0%})"
                         for p in PRECISIONS) + " |")
    if "compiled_fp32" in report:
        c = report["compiled_fp32"]
        lines += ["", f"torch.compile (inductor) of the fp32 forward: {c['reads_per_s']:,.0f} read-strands/s at 1 "
                  f"thread against {c['eager_reads_per_s']:,.0f} eager, alternating ({c['speedup']}x); compile "
                  f"{c['compile_s_batch64']} s at batch 64, {c['compile_s_batch17']} s more for a "
                  "ragged last batch of 17."]
    lines += ["", "| end to end, 1 thread, fp32 | rate | bare scoring | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['rate']:,.0f} {r['unit']} | {r['bare_forward']:,.0f} | {r['ratio']:.2f} |"
              for r in report["end_to_end"]]
    if report["agreement"]:
        lines += ["", "| bf16 vs fp32 | records | calls agree | differ | largest probability move | accuracy fp32 / "
                  "bf16 |", "|---|---|---|---|---|---|"]
        lines += [f"| {a['model']} on {data_name(a['data'])} | {a['records']:,} | {a['calls_agree']:.3%} "
                  f"| {a['calls_differ']} | {a['max_prob_move']:.4f} | {a['accuracy_fp32']} / {a['accuracy_bf16']} |"
                  for a in report["agreement"]]
    return "\n".join(lines) + "\n"


def data_name(data: str) -> str:
    """`folder/file` of a data path, with the reads it was cut into."""
    path = Path(data.removeprefix("reads:"))
    return f"{path.parent.name}/{path.name}" + (" (150-base reads)" if data.startswith("reads:") else "")


def write_doc(doc: Path, text: str, marks: tuple[str, str] = DOC_MARKS) -> None:
    """Replace the text between the markers in `doc` (appending them where they are missing, the main ones
    under their section's heading)."""
    start, end = marks
    current = doc.read_text()
    if start not in current:
        heading = "## CPU inference: the forward against the matmul rate\n\n" if marks == DOC_MARKS else ""
        current += f"\n{heading}{start}\n{end}\n"
    head, rest = current.split(start, 1)
    doc.write_text(f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=3000, help="150-base reads in the FASTQ (default: 3000)")
    parser.add_argument("--scan-bases", type=int, default=300_000, help="genome prefix scanned (default: 300,000)")
    parser.add_argument("--variants", type=int, default=1000, help="SNVs scored (default: 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the rate measurements")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="measure torch.compile of the forward (default: on)")
    parser.add_argument("--agreement", action="append", default=[], metavar="MODEL=FASTA",
                        help="bf16 against fp32 on a trained model and its data; FASTA as reads:FASTA cuts "
                        "--agreement-reads 150-base reads from its records")
    parser.add_argument("--agreement-reads", type=int, default=10_000)
    parser.add_argument("--int8", metavar="MODEL=FASTA",
                        help="only int8 against fp32 and bf16 (rates, and agreement on a trained model and its data)")
    parser.add_argument("--kraken2", action="store_true", help="Kraken2 side by side (where it is installed)")
    parser.add_argument("--kraken2-only", action="store_true",
                        help="only the Kraken2 side by side: replace the `kraken2` figures, keep the others")
    parser.add_argument("--kraken2-reads", type=int, default=500,
                        help="150-base tiles per genome and region for the accuracy (default: 500)")
    parser.add_argument("--kraken2-windows", type=int, default=2000, help="genomix training windows per epoch")
    parser.add_argument("--kraken2-epochs", type=int, default=2)
    parser.add_argument("--json-out", type=Path, default=REPO / "docs" / "inference_cpu.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "PERFORMANCE.md")
    parser.add_argument("--no-doc", action="store_true", help="print only: write neither the JSON nor the doc")
    args = parser.parse_args(argv)
    reuse_large_allocations()
    genomix_console.quiet = True
    if args.int8:
        return int8_main(args)
    if args.kraken2_only:
        return kraken2_only(args)
    report = measure(args)
    text = markdown(report)
    side = kraken2_markdown(report["kraken2"]) if report.get("kraken2") else None
    print(text + (f"\n{side}" if side else ""))
    if not args.no_doc:
        # a run without --kraken2 keeps the last side by side's figures, as the doc keeps its block
        kept = {k: v for k, v in previous(args.json_out).items() if k == "int8" or k == "kraken2" and side is None}
        args.json_out.write_text(json.dumps(report | kept, indent=1) + "\n")
        write_doc(args.doc, text)
        if side:
            write_doc(args.doc, side, KRAKEN2_MARKS)
        print(f"wrote {args.json_out} and {args.doc}", file=sys.stderr)


def previous(json_out: Path) -> dict:
    return json.loads(json_out.read_text()) if json_out.exists() else {}


def kraken2_only(args: argparse.Namespace) -> None:
    """The Kraken2 side by side alone, its figures put into the existing JSON and doc."""
    side = measure_kraken2(args)
    if side is None:
        return
    update_part(args, "kraken2", side, kraken2_markdown(side), KRAKEN2_MARKS)


def update_part(args: argparse.Namespace, key: str, figures: dict, text: str, marks: tuple[str, str]) -> None:
    """Print one part's table, and put its figures under `key` in the existing JSON and its table between
    `marks` in the doc, keeping every other part."""
    print(text)
    if not args.no_doc:
        args.json_out.write_text(json.dumps(previous(args.json_out) | {key: figures}, indent=1) + "\n")
        write_doc(args.doc, text, marks)
        print(f"wrote {args.json_out} and {args.doc}", file=sys.stderr)


def int8_main(args: argparse.Namespace) -> None:
    """--int8: measure, print, and update the JSON's `int8` key and the int8 table of the doc."""
    report = measure_int8(args.int8, args.rounds)
    update_part(args, "int8", report, int8_markdown(report), INT8_MARKS)


if __name__ == "__main__":
    main()
