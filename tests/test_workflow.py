"""The Snakemake workflow in docs/: trained, predicted in shards and merged, it gives what one `predict` gives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, TINY, TRAIN_FA

SNAKEFILE = ROOT / "docs" / "workflow" / "Snakefile"


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake is not installed (the [dev] extra has it)")
def test_sharded_workflow_equals_one_predict_byte_for_byte(tmp_path, test_fa):
    out = tmp_path / "results"
    multiqc = shutil.which("multiqc") is not None
    config = [f"train={TRAIN_FA}", f"reads={test_fa}", f"out={out}", "shards=3", f"train_options={' '.join(TINY)}",
              f"multiqc={int(multiqc)}"]
    run = subprocess.run(["snakemake", "-s", SNAKEFILE, "--cores", "2", "--quiet", "--config", *config],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    # a process of its own, as the workflow's: a process that has trained (this one) may score short inputs with
    # the fused factor kernel, whose sums round differently in the last digit
    whole = subprocess.run([sys.executable, "-m", "genomix", "predict", out / "model.gmx", test_fa, "-o", "-",
                            "--report", tmp_path / "report.tsv"], capture_output=True, text=True, check=True)
    assert (out / "predictions.tsv").read_text() == whole.stdout
    merged = [line.split("\t") for line in (out / "report.tsv").read_text().splitlines()]
    single = [line.split("\t") for line in (tmp_path / "report.tsv").read_text().splitlines()]
    assert [row[:2] + row[3:4] for row in merged] == [row[:2] + row[3:4] for row in single]  # counts and bases
    assert json.loads((out / "metrics.json").read_text())["n"] == 200
    kraken = [line.split("\t") for line in (out / "report.kreport").read_text().splitlines()]
    assert {row[5].strip(): int(row[2]) for row in kraken if row[3] in ("U", "S")} == \
        {row[0]: int(row[1]) for row in single[1:]}  # Kraken's direct counts are the report's
    if multiqc:
        parsed = (out / "multiqc" / "multiqc_data" / "multiqc_kraken.txt").read_text()
        assert all(row[5].strip() in parsed for row in kraken if row[3] == "S")
