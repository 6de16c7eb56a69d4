"""Bad command lines through the real entry point (`genomix.cli.main`, in-process): each must exit with code 2
and one stderr line that names the problem, and leave nothing at the output path."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY

T = [a for a in TINY if a != "--device"][:-2]  # tiny settings without the device (added per case)
CASES = {  # name: (arguments, the fragment its one error line must hold); {model}, {train}, {test}, {out}
    "lr_nan": (["train", "{train}", "-o", "{out}/m.gmx", "--lr", "nan"], "--lr must be a positive number, got nan"),
    "lr_inf": (["train", "{train}", "-o", "{out}/m.gmx", "--lr", "inf"], "--lr must be a positive number, got inf"),
    "lr_negative": (["train", "{train}", "-o", "{out}/m.gmx", "--lr", "-1"], "--lr must be a positive number"),
    "seed_negative": (["train", "{train}", "-o", "{out}/m.gmx", "--seed", "-1"], "--seed must be between 0"),
    "seed_huge": (["train", "{train}", "-o", "{out}/m.gmx", "--seed", str(2**40)], "--seed must be between 0"),
    "val_fraction_nan": (["train", "{train}", "-o", "{out}/m.gmx", "--val-fraction", "nan"], "--val-fraction"),
    "val_fraction_one": (["train", "{train}", "-o", "{out}/m.gmx", "--val-fraction", "1"], "--val-fraction"),
    "holdout_zero": (["train", "{train}", "-o", "{out}/m.gmx", "--holdout-fraction", "0"], "--holdout-fraction"),
    "epochs_zero": (["train", "{train}", "-o", "{out}/m.gmx", "--epochs", "0"], "--epochs must be at least 1"),
    "dropout_nan": (["train", "{train}", "-o", "{out}/m.gmx", "--dropout", "nan"], "--dropout must be in [0, 1)"),
    "dim_zero": (["train", "{train}", "-o", "{out}/m.gmx", "--dim", "0"], "--dim must be at least 1, got 0"),
    "max_len_small": (["train", "{train}", "-o", "{out}/m.gmx", "--max-len", "3"], "--max-len must be at least 8"),
    "unknown_model": (["train", "{train}", "-o", "{out}/m.gmx", "--arch", "bert"], "'bert' is not one of"),
    "unknown_option": (["train", "{train}", "-o", "{out}/m.gmx", "--set", "wings=2"], "has no option wings"),
    "option_type": (["train", "{train}", "-o", "{out}/m.gmx", "--set", "heads=many", "--arch", "transformer"],
                    "option heads expects int"),
    "set_syntax": (["train", "{train}", "-o", "{out}/m.gmx", "--set", "heads"], "expected KEY=VALUE"),
    "heads_divide": (["train", "{train}", "-o", "{out}/m.gmx", "--arch", "transformer", "--dim", "30"],
                     "not divisible by heads"),
    "kmer_dim": (["train", "{train}", "-o", "{out}/m.gmx", "--arch", "kmer", "--dim", "8"], "has no option dim"),
    "positive_unknown": (["train", "{train}", "-o", "{out}/m.gmx", "--positive-class", "x", *T], "not a class"),
    "window_without_genome": (["train", "{train}", "-o", "{out}/m.gmx", "--genome-window", "64"],
                              "--genome-window applies to --genome"),
    "genome_without_window": (["train", "--genome", "a=x.fa", "--genome", "b=y.fa", "-o", "{out}/m.gmx"],
                              "--genome needs --genome-window"),
    "genome_and_files": (["train", "{train}", "--genome", "a=x.fa", "-o", "{out}/m.gmx"], "without sequence files"),
    "bed_no_reference": (["predict", "{model}", "--bed", "r.bed"], "--bed needs --reference"),
    "reference_no_bed": (["predict", "{model}", "{test}", "--reference", "g.fa"], "--reference is used with --bed"),
    "nothing_to_train": (["train", "-o", "{out}/m.gmx"], "nothing to train on"),
    "nothing_to_score": (["predict", "{model}"], "nothing to score"),
    "nothing_to_embed": (["embed", "{model}", "-o", "{out}/e.npy"], "nothing to embed"),
    "missing_argument": (["predict"], "Missing argument"),
    "bad_integer": (["predict", "{model}", "{test}", "--batch-size", "many"], "'--batch-size'"),
    "unknown_command": (["predcit", "{model}"], "No such command 'predcit'"),
    "unknown_flag": (["predict", "{model}", "{test}", "--colour"], "No such option"),
    "threshold_high": (["predict", "{model}", "{test}", "--threshold", "1.5"], "--threshold must be between 0 and 1"),
    "threshold_nan": (["predict", "{model}", "{test}", "--threshold", "nan"], "--threshold must be between 0 and 1"),
    "min_score_zero": (["predict", "{model}", "{test}", "--min-score", "0"], "--min-score must be in (0, 1]"),
    "shard_syntax": (["predict", "{model}", "{test}", "--shard", "2of3"], "--shard 2of3: expected I/N"),
    "shard_range": (["predict", "{model}", "{test}", "--shard", "4/3"], "I must be between 1 and N"),
    "output_suffix": (["predict", "{model}", "{test}", "-o", "{out}/p.xlsx"], "unknown output format '.xlsx'"),
    "output_is_input": (["predict", "{model}", "{out}/in.tsv", "-o", "{out}/in.tsv"], "input"),
    "output_is_model": (["predict", "{model}", "{test}", "-o", "{model}"], "unknown output format '.gmx'"),
    "classified_no_hash": (["predict", "{model}", "{test}", "--classified-out", "{out}/all.fa"], "put '#'"),
    "paired_and_inputs": (["predict", "{model}", "{test}", "--paired", "{test}", "{test}"], "--paired reads its two"),
    "paired_missing": (["predict", "{model}", "--paired", "{out}/r1.fq", "{out}/r2.fq"], "no such file"),
    "embed_suffix": (["embed", "{model}", "{test}", "-o", "{out}/e.csv"], "output format '.csv'; choose .parquet"),
    "evaluate_unlabelled": (["evaluate", "{model}", "{out}/in.tsv"], "has no label"),
    "evaluate_unknown_label": (["evaluate", "{model}", "plasmid={test}"], "not a class of the model"),
    "evaluate_genome_model": (["evaluate", "{model}", "--genome", "a={test}", "--genome", "b={test}"],
                              "--genome needs a model trained with --genome"),
    "scan_step": (["scan", "{model}", "--reference", "{test}", "-o", "{out}/t.bedgraph", "--step", "0"],
                  "--step must be at least 1"),
    "scan_window": (["scan", "{model}", "--reference", "{test}", "-o", "{out}/t.bedgraph", "--window", "4"],
                    "--window must be"),
    "scan_class": (["scan", "{model}", "--reference", "{test}", "-o", "{out}/t.bedgraph", "--class", "x"], "--class x"),
    "scan_same_outputs": (["scan", "{model}", "--reference", "{test}", "-o", "{out}/t.bed", "--bed-out", "{out}/t.bed"],
                          "would both be one file"),
    "scan_all_stdout": (["scan", "{model}", "--reference", "{test}", "-o", "-", "--all-classes"],
                        "--all-classes writes one"),
    "threads_zero": (["predict", "{model}", "{test}", "--threads", "0"], "--threads must be between 1 and 4096"),
    "device_unknown": (["predict", "{model}", "{test}", "--device", "tpu"], "--device tpu: expected auto"),
    "info_missing": (["info", "{out}/none.gmx"], "no such model file"),
    "info_not_model": (["info", "{test}"], "not a genomix model file"),
    "resume_without_checkpoint": (["train", "{train}", "-o", "{out}/m.gmx", "--resume"], "--resume: no checkpoint"),
}


def test_the_command_line_corpus_is_large():
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES)
def test_bad_command_line_is_one_line_with_exit_code_2(command_line, case):
    call, out = command_line
    args, fragment = CASES[case]
    code, lines = call(args)
    errors = [line for line in lines if line.startswith("genomix: error: ")]
    assert code == 2, lines
    assert len(errors) == 1 and fragment in errors[0], lines
    assert not any("Traceback" in line for line in lines)
    assert sorted(p.name for p in Path(out).iterdir()) == ["in.tsv"]  # nothing written
