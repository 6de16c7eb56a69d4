"""Kraken2-format outputs and MultiQC custom content, read by the tools that read Kraken2's: MultiQC's Kraken module,
kraken-biom and taxpasta, each where installed, must count what genomix's TSV report counts.

The model has three classes (k-mer regression on sequences of three base compositions: fitted in closed form, in
well under a second); some records are left unclassified by --min-score so the U line is not empty.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genomix.errors import GenomixError
from genomix.io.kraken import ROOT, Taxonomy, stable_taxid

CLASSES = ["alpha", "beta", "gamma"]
WEIGHTS = {"alpha": [0.4, 0.1, 0.1, 0.4], "beta": [0.1, 0.4, 0.4, 0.1], "gamma": [0.25, 0.25, 0.25, 0.25]}
TAXONOMY = ("class\ttaxid\tname\tlineage\n"
            "alpha\t562\tEscherichia coli\tD:2:Bacteria;P:1224:Pseudomonadota;G:561:Escherichia\n"
            "beta\t564\tEscherichia fergusonii\tD:2:Bacteria;P:1224:Pseudomonadota;G:561:Escherichia\n"
            "gamma\t1717\tCorynebacterium diphtheriae\tD:2:Bacteria;P:201174:Actinomycetota;G:1716:Corynebacterium\n")
TAXPASTA_VENV = Path(os.environ.get("GENOMIX_TOOLS_CACHE", Path.home() / ".cache" / "genomix-tools")) / "taxpasta"


def fasta(path: Path, n: int, seed: int, length: int) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as out:
        for i in range(n):
            label = CLASSES[i % 3]
            out.write(f">r{i} label={label}\n{''.join(rng.choice(list('ACGT'), length, p=WEIGHTS[label]))}\n")
    return path


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, invoke) -> Path:
    """A folder of one predict run's outputs: the TSV report, the Kraken report and per-read lines (with the
    taxonomy), and MultiQC custom content."""
    folder = tmp_path_factory.mktemp("kraken")
    model = folder / "three.gmx"
    result = invoke("train", fasta(folder / "train.fa", 300, 0, 120), "-o", model, "--arch", "kmer", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    reads = fasta(folder / "reads.fa", 90, 1, 30)  # short: some calls are unsure
    (folder / "taxonomy.tsv").write_text(TAXONOMY)
    common = [model, reads, "--min-score", "0.9", "--device", "cpu"]
    for args in (["-o", folder / "sample.kraken", "--report", folder / "sample.kreport", "--taxonomy",
                  folder / "taxonomy.tsv"],
                 ["-o", folder / "calls.tsv", "--report", folder / "sample.tsv"],
                 ["-o", folder / "plain.kraken", "--report", folder / "plain.txt", "--report-format", "kraken"],
                 ["-o", folder / "calls2.tsv", "--report", folder / "sample_mqc.json"]):
        result = invoke("predict", *common, *args)
        assert result.exit_code == 0, result.stderr
    result = invoke("evaluate", model, reads, "--device", "cpu", "-o", folder / "metrics_mqc.json",
                    "--report", folder / "evaluated_mqc.tsv")
    assert result.exit_code == 0, result.stderr
    return folder


def counts(folder: Path) -> dict[str, int]:
    table = pd.read_csv(folder / "sample.tsv", sep="\t")
    return dict(zip(table["class"], table["records"]))


def kreport(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, names=["percent", "clade", "direct", "rank", "taxid", "name"],
                       keep_default_na=False)


def test_kraken_report_carries_the_taxonomy_and_the_tsv_reports_counts(outputs):
    expected = counts(outputs)
    assert 0 < expected["unclassified"] < 90, "--min-score should leave some records unclassified"
    table = kreport(outputs / "sample.kreport")
    lines = (outputs / "sample.kreport").read_text().splitlines()
    assert lines[0].split("\t")[3:] == ["U", "0", "unclassified"] and lines[1].split("\t")[3:] == ["R", "1", "root"]
    by_taxid = table.set_index("taxid")
    for name, taxid in zip(CLASSES, (562, 564, 1717)):
        assert by_taxid.loc[taxid, "direct"] == by_taxid.loc[taxid, "clade"] == expected[name]
        assert by_taxid.loc[taxid, "rank"] == "S"
    assert by_taxid.loc[0, "clade"] == expected["unclassified"]
    assert by_taxid.loc[ROOT, "clade"] == 90 - expected["unclassified"]
    assert by_taxid.loc[561, "clade"] == expected["alpha"] + expected["beta"]  # the genus holds both species
    assert by_taxid.loc[561, "name"] == "      Escherichia" and by_taxid.loc[562, "name"].strip() == "Escherichia coli"
    assert np.isclose(by_taxid.loc[0, "percent"] + by_taxid.loc[ROOT, "percent"], 100, atol=0.02)
    order = [t for t in table["taxid"] if t in (2, 1224, 201174)]
    clade = by_taxid["clade"]
    assert order[0] == 2 and (order[1:] == [1224, 201174]) == (clade[1224] >= clade[201174])  # Kraken2's order


def test_kraken_per_read_lines(outputs):
    calls = pd.read_csv(outputs / "calls.tsv", sep="\t")
    lines = [line.split("\t") for line in (outputs / "sample.kraken").read_text().splitlines()]
    taxids = {"alpha": "562", "beta": "564", "gamma": "1717", "unclassified": "0"}
    assert [row[:4] for row in lines] == [["U" if label == "unclassified" else "C", i, taxids[label], str(n)]
                                          for i, label, n in zip(calls["id"], calls["label"], calls["length"])]
    hits = dict(pair.split(":") for pair in lines[0][4].split())
    assert list(hits) == ["562", "564", "1717"]
    assert np.allclose([float(p) for p in hits.values()], calls.loc[0, [f"p_{c}" for c in CLASSES]], atol=1e-6)


def test_without_a_taxonomy_classes_are_species_under_the_root_with_stable_ids(outputs):
    table = kreport(outputs / "plain.txt")  # --report-format kraken: any name
    assert list(table["rank"]) == ["U", "R", *(["S"] * 3)]
    assert set(table["taxid"][2:]) == {stable_taxid(c) for c in CLASSES}
    assert all(name.startswith("  ") and not name.startswith("   ") for name in table["name"][2:])
    assert stable_taxid("alpha") == stable_taxid("alpha") and 2**31 > stable_taxid("alpha") > 10**9
    expected = counts(outputs)
    assert dict(zip(table["name"].str.strip(), table["direct"])) == {"root": 0, **expected}
    first = (outputs / "plain.kraken").read_text().splitlines()[0].split("\t")
    assert first[2] in {"0", *(str(stable_taxid(c)) for c in CLASSES)}


@pytest.mark.parametrize(("table", "message"), [
    ("class\ttaxid\nalpha\t562\nbeta\t564\n", "no row for the class\\(es\\) gamma"),
    ("class\tid\n", "the header must name the columns class and taxid"),
    ("class\ttaxid\tlineage\nalpha\t562\tG:561:Escherichia\nbeta\t564\tG:561:Other\ngamma\t1\t\n",
     "taxid 561 is given as 'Escherichia'"),
    ("class\ttaxid\tname\nalpha\t562\tE\nbeta\t562\tE\ngamma\t3\tC\n",
     "classes alpha and beta have the same taxid 562"),
    ("class\ttaxid\tlineage\nalpha\t562\tGenus:561:E\n", "'Genus:561:E' is not RANK:TAXID:NAME"),
    ("class\ttaxid\nalpha\t1\n", "taxid 1 is reserved"),
])
def test_taxonomy_mistakes_are_user_errors(tmp_path, table, message):
    (tmp_path / "t.tsv").write_text(table)
    with pytest.raises(GenomixError, match=message):
        Taxonomy.read(tmp_path / "t.tsv", CLASSES)


def test_multiqc_custom_content(outputs):
    content = json.loads((outputs / "sample_mqc.json").read_text())
    assert content["plot_type"] == "bargraph" and content["data"] == {"sample": counts(outputs)}


def run_tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.skipif(shutil.which("multiqc") is None, reason="multiqc is not installed (pip install multiqc)")
def test_multiqc_parses_the_kraken_report_and_the_custom_content(outputs, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("sample.kreport", "sample_mqc.json", "metrics_mqc.json", "evaluated_mqc.tsv"):
        shutil.copy(outputs / name, folder / name)
    run_tool("multiqc", "--no-ansi", "-q", "-f", "--data-format", "tsv", "-o", str(tmp_path / "out"), str(folder),
             cwd=tmp_path)
    data = tmp_path / "out" / "multiqc_data"
    kraken = pd.read_csv(data / "multiqc_kraken.txt", sep="\t").set_index("Sample").loc["sample.kreport"]
    expected = counts(outputs)
    species = ast.literal_eval(kraken["S"])  # taxon → records in its clade, per rank
    assert species == {"Escherichia coli": expected["alpha"], "Escherichia fergusonii": expected["beta"],
                       "Corynebacterium diphtheriae": expected["gamma"]}
    assert ast.literal_eval(kraken["G"]) == {"Escherichia": expected["alpha"] + expected["beta"],
                                             "Corynebacterium": expected["gamma"]}
    assert ast.literal_eval(kraken["U"]) == {"unclassified": expected["unclassified"]}
    custom = pd.read_csv(data / "multiqc_genomix_predict_plot.txt", sep="\t").set_index("Sample")
    assert custom.loc["sample"].to_dict() == expected
    evaluated = pd.read_csv(data / "multiqc_genomix_evaluate_plot.txt", sep="\t").set_index("Sample")
    assert evaluated.loc["evaluated"].sum() == 90
    metrics = pd.read_csv(data / "multiqc_genomix_evaluate_table.txt", sep="\t").set_index("Sample")
    assert metrics.loc["metrics", "n"] == 90 and 0 <= metrics.loc["metrics", "accuracy"] <= 1


@pytest.mark.skipif(shutil.which("kraken-biom") is None, reason="kraken-biom is not installed")
def test_kraken_biom_counts_the_species(outputs, tmp_path):
    run_tool("kraken-biom", str(outputs / "sample.kreport"), "--fmt", "tsv", "-o", str(tmp_path / "t.tsv"),
             cwd=tmp_path)
    table = pd.read_csv(tmp_path / "t.tsv", sep="\t", skiprows=1, index_col=0)
    expected = counts(outputs)
    found = {str(k): int(v) for k, v in table.iloc[:, 0].items()}
    assert found == {t: expected[c] for c, t in zip(CLASSES, ("562", "564", "1717")) if expected[c]}


@pytest.mark.skipif(not (TAXPASTA_VENV / "bin" / "taxpasta").exists(),
                    reason=f"taxpasta's venv is not built: python bench/taxpasta_venv.py ({TAXPASTA_VENV})")
def test_taxpasta_standardises_the_report(outputs, tmp_path):
    run_tool(str(TAXPASTA_VENV / "bin" / "taxpasta"), "standardise", "--profiler", "kraken2", "-o",
             str(tmp_path / "std.tsv"), str(outputs / "sample.kreport"), cwd=tmp_path)
    table = pd.read_csv(tmp_path / "std.tsv", sep="\t")
    found = dict(zip(table["taxonomy_id"], table["count"]))
    expected = counts(outputs)
    assert found[0] == expected["unclassified"]
    assert all(found.get(t, 0) == expected[c] for c, t in zip(CLASSES, (562, 564, 1717)))
    assert sum(found.values()) == 90


def test_report_format_is_checked():
    from genomix.applying.predicting import Outputs, report_format

    assert report_format(Outputs(report="r.kreport")) == "kraken" and report_format(Outputs(report="r.txt")) == "tsv"
    with pytest.raises(GenomixError, match="choose tsv or kraken"):
        report_format(Outputs(report="r.txt", report_format="biom"))


def krona_text(report: Path) -> str:
    """The report as Krona's text input, one line per taxon with reads of its own: its direct count, then the names
    from the top of the tree down to it (what KrakenTools' kreport2krona.py writes, without rank prefixes)."""
    lines, path = [], []
    for row in kreport(report).itertuples():
        depth = (len(row.name) - len(row.name.lstrip(" "))) // 2
        path[depth:] = [row.name.strip()]
        if row.direct and row.rank != "U":
            lines.append("\t".join([str(row.direct), *path[1:]]))  # below the root
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(shutil.which("ktImportText") is None, reason="Krona is not installed (Debian package radiant)")
def test_krona_draws_the_report_with_its_counts(outputs, tmp_path):
    (tmp_path / "sample.krona.txt").write_text(krona_text(outputs / "sample.kreport"))
    run_tool("ktImportText", "sample.krona.txt", "-o", "sample.krona.html", cwd=tmp_path)
    page = (tmp_path / "sample.krona.html").read_text()
    expected = counts(outputs)
    for name, cls in (("Escherichia coli", "alpha"), ("Escherichia fergusonii", "beta"),
                      ("Corynebacterium diphtheriae", "gamma")):
        node = page[page.index(f'<node name="{name}">'):]
        assert node.split("<val>")[1].split("</val>")[0] == str(expected[cls])
