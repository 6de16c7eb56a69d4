"""Does masked-base pretraining help? Pretrain a backbone on the training regions of the genomes in
../shared/data/genomes, then fine-tune it on species of origin (bench/long_range.py's task and budget) and
on labelled promoter sets, against the from-scratch rows of docs/LONG_RANGE.md and docs/RESULTS.md.

The genomes are held out as bench/long_range.py holds them out (the last `holdout_fraction` of every
contig, half validation, half test), so pretraining never sees the ends the species test is scored on.
Each step appends its row to docs/pretrain.json; docs/PRETRAINING.md is written by hand from them.

    python bench/pretrain_experiment.py pretrain --epochs 10 --snapshot 5
    python bench/pretrain_experiment.py species --backbone WORK/backbone_e10.gmx
    python bench/pretrain_experiment.py labelled --dataset ecoli_sigma70_promoters --backbone WORK/backbone_e10.gmx
    python bench/pretrain_experiment.py overlap
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import torch
from long_range import GENOMES, decompress_genomes, species_specs

from genomix.applying.evaluating import evaluate
from genomix.console import console, reuse_large_allocations
from genomix.fitting import loop
from genomix.fitting.pretraining import BASES, PretrainSettings, fit_backbone, open_genomes
from genomix.fitting.training import TrainSettings, fit
from genomix.io.genomes import GenomeSet, reverse_complement
from genomix.io.reading import read_inputs
from genomix.io.sources import RecordSource
from genomix.models.modelfile import ModelCard, TrainedModel, save_model

from provenance import code_version

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS_JSON = REPO / "docs" / "pretrain.json"
WINDOW = 1024


def add_row(row: dict) -> None:
    rows = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else []
    RESULTS_JSON.write_text(json.dumps([*rows, row | {"code": code_version()}], indent=1))
    console.log(json.dumps(row))


def snapshot_at(epoch: int, path: Path, settings: PretrainSettings):
    """A `loop.save_checkpoint` that also writes the backbone as it stands after `epoch` (a second point of
    pretraining time from the same run; its learning rate had not decayed yet)."""
    real = loop.save_checkpoint

    def save(checkpoint, network, optimizer, scheduler, state) -> None:
        real(checkpoint, network, optimizer, scheduler, state)
        if state.epoch == epoch:
            backbone = network.backbone
            card = ModelCard(backbone.name, backbone.config, BASES, both_strands=True, kind="backbone",
                             validation=state.best_metrics)
            save_model(TrainedModel(backbone, card), path)
            console.log(f"snapshot after epoch {epoch}: {path}")

    return save


def run_pretrain(args) -> None:
    folder = decompress_genomes(args.work_dir / "genomes")
    specs = [str(p) for p in sorted(folder.glob("*.fna"))  # every genome: pretraining needs no class
             if not (args.leave_out and p.name.startswith(args.leave_out))]
    settings = PretrainSettings(genome_window=WINDOW, max_len=WINDOW, epochs=args.epochs, patience=args.epochs,
                                windows_per_epoch=args.windows_per_epoch, batch_size=args.batch_size, seed=args.seed,
                                device=args.device)
    name = f"_without_{args.leave_out}" if args.leave_out else ""
    output = args.work_dir / f"backbone_e{args.epochs}{name}.gmx"
    early = args.work_dir / f"backbone_e{args.snapshot}{name}.gmx"
    loop.save_checkpoint = snapshot_at(args.snapshot, early, settings)
    started = time.perf_counter()
    data = open_genomes(specs, WINDOW, settings.holdout_fraction)
    model = fit_backbone(data, settings, checkpoint=args.work_dir / f"pretrain{name}.ckpt")
    seconds = time.perf_counter() - started
    save_model(model, output)
    command = (f"python bench/pretrain_experiment.py pretrain --epochs {args.epochs} --snapshot {args.snapshot} "
               f"--windows-per-epoch {args.windows_per_epoch} --batch-size {args.batch_size} --seed {args.seed}"
               + (f" --leave-out {args.leave_out}" if args.leave_out else "") + "  # = "
               f"genomix pretrain --genome GENOME.fna ... --genome-window {WINDOW} --epochs {args.epochs} "
               f"--windows-per-epoch {args.windows_per_epoch} --batch-size {args.batch_size} --patience {args.epochs}")
    add_row({"step": "pretrain", "backbone": output.name, "snapshot": early.name, "seconds": round(seconds),
             "threads": torch.get_num_threads(), "history": model.card.training.history,
             "validation": model.card.validation, "command": command, "seed": args.seed,
             "genomes": [Path(p).name for p in specs]})


def run_species(args) -> None:
    """bench/long_range.py's species budget at 1,024 (6 epochs of 2 Mb, batch 32), from the backbone; the test
    figure of the blend, and of the network alone (the same model with the k-mer term's weight set to 0)."""
    specs = species_specs(decompress_genomes(args.work_dir / "genomes"))
    settings = TrainSettings(genome_window=WINDOW, epochs=6, rc_augment=True, windows_per_epoch=2_000_000 // WINDOW,
                             batch_size=32, seed=args.seed, device=args.device, init=str(args.backbone),
                             freeze_backbone=args.freeze)
    started = time.perf_counter()
    trained = fit(GenomeSet.open(specs, WINDOW, settings.holdout_fraction), settings)
    seconds = time.perf_counter() - started
    weight = trained.card.training.composition_weight
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, a in (("blend", weight), ("network", 0.0)):
            trained.network.set_composition_weight(a)
            save_model(trained, Path(tmp) / "m.gmx")
            result, _ = evaluate(Path(tmp) / "m.gmx", RecordSource(genomes=specs), device=args.device)
            figures[name] = {k: result[k] for k in ("n", "accuracy", "mcc", "auroc")}
    command = (f"python bench/pretrain_experiment.py species --backbone {args.backbone.name} --seed {args.seed}"
               f"{' --freeze' * args.freeze}  # = genomix train --genome CLASS=genome.fna ... --init "
               f"{args.backbone.name} --genome-window {WINDOW} --rc-augment --windows-per-epoch "
               f"{settings.windows_per_epoch} --batch-size 32 --epochs 6{' --freeze-backbone' * args.freeze}")
    add_row({"step": "species", "backbone": args.backbone.name, "freeze": args.freeze, "seconds": round(seconds),
             "composition_weight": weight, **figures, "command": command, "seed": args.seed,
             "threads": torch.get_num_threads()})


def run_labelled(args) -> None:
    """Default training settings on a labelled set, from the backbone (its max_len and architecture)."""
    train_file, test_file = DATA / args.dataset / "train.fa.gz", DATA / args.dataset / "test.fa.gz"
    settings = TrainSettings(seed=args.seed, device=args.device, init=str(args.backbone), freeze_backbone=args.freeze)
    started = time.perf_counter()
    trained = fit(read_inputs([str(train_file)]), settings)
    seconds = time.perf_counter() - started
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, a in (("blend", trained.card.training.composition_weight), ("network", 0.0)):
            trained.network.set_composition_weight(a)
            save_model(trained, Path(tmp) / "m.gmx")
            result, _ = evaluate(Path(tmp) / "m.gmx", RecordSource([str(test_file)]), device=args.device)
            figures[name] = {k: result[k] for k in ("n", "accuracy", "mcc", "auroc")}
    command = (f"genomix train ../shared/data/{args.dataset}/train.fa.gz -o {args.dataset}.gmx --init "
               f"{args.backbone.name} --seed {args.seed} --device cpu{' --freeze-backbone' * args.freeze} && "
               f"genomix evaluate {args.dataset}.gmx ../shared/data/{args.dataset}/test.fa.gz")
    add_row({"step": "labelled", "dataset": args.dataset, "backbone": args.backbone.name, "freeze": args.freeze,
             "seconds": round(seconds), "composition_weight": trained.card.training.composition_weight,
             "epochs": trained.card.training.epochs_run, **figures, "command": command, "seed": args.seed})


def run_overlap(args) -> None:
    """How many test promoters of the E. coli set occur, exactly, on either strand of the K-12 genome, and how
    many of those lie in the training region of pretraining (outside the held-out end)."""
    with gzip.open(GENOMES / "escherichia_coli_K12_W3110.fna.gz", "rt") as handle:
        genome = "".join(line.strip() for line in handle if not line.startswith(">")).upper()
    train_end = len(genome) - 2 * round(len(genome) * TrainSettings().holdout_fraction / 2)
    records = list(read_inputs([str(DATA / "ecoli_sigma70_promoters" / "test.fa.gz")]))
    counts = {"test_records": len(records)}
    for label in sorted({r.label for r in records}):
        found = in_training = 0
        for record in (r for r in records if r.label == label):
            spots = [genome.find(s) for s in (record.seq, reverse_complement(record.seq))]
            spots = [at for at in spots if at >= 0]
            found += bool(spots)
            in_training += any(at + len(record.seq) <= train_end for at in spots)
        counts[label] = {"records": sum(r.label == label for r in records), "in_genome": found,
                         "in_pretraining_region": in_training}
    add_row({"step": "overlap", "genome": "escherichia_coli_K12_W3110", "genome_length": len(genome),
             "training_region_end": train_end, **counts, "command": "python bench/pretrain_experiment.py overlap"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("pretrain", "species", "labelled", "overlap"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--snapshot", type=int, default=5, help="pretrain: also keep the backbone after this epoch")
    parser.add_argument("--windows-per-epoch", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16, help="pretrain: windows per step")
    parser.add_argument("--leave-out", help="pretrain: skip the genomes whose file name starts with this")
    parser.add_argument("--backbone", type=Path)
    parser.add_argument("--freeze", action="store_true", help="fine-tune the head only")
    parser.add_argument("--dataset", default="ecoli_sigma70_promoters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "genomix-long-range")
    args = parser.parse_args()
    reuse_large_allocations()
    steps = {"pretrain": run_pretrain, "species": run_species, "labelled": run_labelled, "overlap": run_overlap}
    steps[args.step](args)


if __name__ == "__main__":
    main()
