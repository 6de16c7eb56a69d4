"""Reference genomes, held-out regions, genome windows, BED regions, and `predict --shard`."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from Bio import bgzf

from genomix.errors import GenomixError
from genomix.io.genomes import Genome, GenomeSet, read_bed, reverse_complement


def random_dna(length: int, gc: float, rng: np.random.Generator) -> str:
    weights = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return "".join(rng.choice(list("ACGT"), size=length, p=weights))


def write_genome(path: Path, contigs: dict[str, str]) -> Path:
    path.write_text("".join(f">{name} test contig\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60))
                            + "\n" for name, seq in contigs.items()))
    return path


@pytest.fixture(scope="module")
def genomes(tmp_path_factory) -> dict[str, Path]:
    """Two 'species' told apart by GC content; the AT-rich one has a contig that is mostly N."""
    folder = tmp_path_factory.mktemp("genomes")
    rng = np.random.default_rng(0)
    at_rich = {"at1": random_dna(6000, 0.25, rng), "at2": "N" * 3000 + random_dna(1000, 0.25, rng)}
    gc_rich = {"gc1": random_dna(8000, 0.75, rng)}
    return {"at": write_genome(folder / "at.fa", at_rich), "gc": write_genome(folder / "gc.fa", gc_rich)}


def test_fetch_is_0_based_half_open_and_bgzip_reads_the_same(genomes, tmp_path):
    text = "".join(line for line in genomes["gc"].read_text().splitlines()[1:])
    genome = Genome(genomes["gc"])
    assert genome.contigs == {"gc1": 8000}
    assert genome.fetch("gc1", 100, 250) == text[100:250]
    packed = tmp_path / "gc.fa.gz"
    with bgzf.BgzfWriter(str(packed), "wb") as out:
        out.write(genomes["gc"].read_bytes())
    assert Genome(packed).fetch("gc1", 7000, 7990) == text[7000:7990]


def test_plain_gzip_genome_is_refused_with_the_fix(genomes, tmp_path):
    packed = tmp_path / "gc.fa.gz"
    packed.write_bytes(gzip.compress(genomes["gc"].read_bytes()))
    with pytest.raises(GenomixError, match="gzip but not bgzip.*bgzip"):
        Genome(packed)


def test_held_out_regions_are_the_contig_ends(genomes):
    genome = Genome(genomes["gc"])
    assert genome.regions("train", 0.2) == [("gc1", 0, 6400)]  # 20% held out: 10% validation, 10% test
    assert genome.regions("val", 0.2) == [("gc1", 6400, 7200)]
    assert genome.regions("test", 0.2) == [("gc1", 7200, 8000)]


def test_sampled_windows_stay_in_training_regions_and_skip_n(genomes):
    data = GenomeSet.open([f"at={genomes['at']}", f"gc={genomes['gc']}"], window=200, holdout_fraction=0.2)
    records = data.sample(300, np.random.default_rng(1))
    assert [r.label for r in records].count("at") == [r.label for r in records].count("gc") == 300
    train_end = {"at1": 4800, "at2": 3200, "gc1": 6400}
    for record in records:
        contig, span = record.id.split(":")
        start, end = map(int, span.split("-"))
        assert end - start == len(record.seq) == 200 and end <= train_end[contig]
        assert record.seq.count("N") <= 100
    assert any(r.id.startswith("at2") for r in records)  # the N-free end of at2 is still used


def test_tiles_do_not_overlap_and_cover_only_the_split(genomes):
    data = GenomeSet.open([f"at={genomes['at']}", f"gc={genomes['gc']}"], window=150, holdout_fraction=0.2)
    tiles = data.tiles("test")
    spans = {(r.id.split(":")[0], *map(int, r.id.split(":")[1].split("-"))) for r in tiles}
    assert ("gc1", 7200, 7350) in spans and ("gc1", 7350, 7500) in spans and len(spans) == len(tiles)
    assert all(start >= {"at1": 5400, "at2": 3600, "gc1": 7200}[c] for c, start, _ in spans)
    assert len(data.tiles("test", per_class=1)) == 2


def test_bed_regions_respect_strand_and_label(genomes, tmp_path):
    text = "".join(line for line in genomes["gc"].read_text().splitlines()[1:])
    bed = tmp_path / "regions.bed"
    bed.write_text("track name=x\n# comment\ngc1\t10\t20\tpromoter\t0\t+\ngc1\t30\t45\tother\t0\t-\ngc1\t50\t60\n")
    records = list(read_bed(str(bed), Genome(genomes["gc"])))
    assert [r.id for r in records] == ["gc1:10-20(+)", "gc1:30-45(-)", "gc1:50-60(.)"]
    assert records[0].seq == text[10:20] and records[1].seq == reverse_complement(text[30:45])
    assert [r.label for r in records] == ["promoter", "other", None]
    assert {r.label for r in read_bed(f"enhancer={bed}", Genome(genomes["gc"]))} == {"enhancer"}


@pytest.mark.parametrize(("line", "fragment"), [
    ("chrX\t1\t5", "contig 'chrX' is not in"),
    ("gc1\t5\t9000", "outside gc1 (length 8000)"),
    ("gc1\tten\t20", "must be integers"),
    ("gc1\t20\t10", "is empty"),
    ("gc1\t1\t5\tx\t0\t*", "strand must be"),
])
def test_bad_bed_lines_name_the_line(genomes, tmp_path, line, fragment):
    bed = tmp_path / "bad.bed"
    bed.write_text(f"gc1\t0\t10\n{line}\n")
    with pytest.raises(GenomixError, match=f"line 2: .*{re.escape(fragment)}"):
        list(read_bed(str(bed), Genome(genomes["gc"])))


GENOME_TRAIN = ["--genome-window", "64", "--windows-per-epoch", "200", "--epochs", "3", "--dim", "16", "--hidden", "16",
                "--layers", "1", "--device", "cpu"]


def test_train_and_evaluate_on_held_out_genome_windows(genomes, tmp_path, invoke):
    specs = ["--genome", f"at={genomes['at']}", "--genome", f"gc={genomes['gc']}"]
    result = invoke("train", *specs, *GENOME_TRAIN, "-o", tmp_path / "g.gmx")
    assert result.exit_code == 0, (result.stderr, result.exception)
    result = invoke("evaluate", tmp_path / "g.gmx", *specs)
    assert result.exit_code == 0, (result.stderr, result.exception)
    metrics = json.loads(result.stdout)
    # test windows: gc1 [7200, 8000), at1 [5400, 6000) and at2 [3600, 4000) tiled by 64
    assert metrics["n"] == 12 + 9 + 6
    assert metrics["accuracy"] > 0.9  # GC content tells the classes apart; chance is about 0.5
    info = invoke("info", tmp_path / "g.gmx").stdout
    assert "200 fresh windows of 64 bp per epoch (at: 100, gc: 100, held-out fraction 0.2)" in info


def test_predict_bed_regions_in_shards(genomes, tmp_path, invoke, trained_model):
    bed = tmp_path / "regions.bed"
    bed.write_text("".join(f"gc1\t{i * 100}\t{i * 100 + 80}\tr{i}\t0\t{'+-'[i % 2]}\n" for i in range(7)))
    rows = {}
    for shard in ("1/2", "2/2"):
        out = tmp_path / f"shard{shard[0]}.tsv"
        result = invoke("predict", trained_model, "--bed", bed, "--reference", genomes["gc"], "--shard", shard,
                        "-o", out, "--device", "cpu")
        assert result.exit_code == 0, (result.stderr, result.exception)
        rows[shard] = [line.split("\t")[0] for line in out.read_text().splitlines()[1:]]
    assert rows["1/2"] == ["gc1:0-80(+)", "gc1:200-280(+)", "gc1:400-480(+)", "gc1:600-680(+)"]
    assert rows["2/2"] == ["gc1:100-180(-)", "gc1:300-380(-)", "gc1:500-580(-)"]


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "--genome", "a=GENOME", "--genome", "b=GENOME", "-o", "m.gmx"], "--genome needs --genome-window"),
    (["train", "--genome", "GENOME", "--genome-window", "64", "-o", "m.gmx"], "give the class as CLASS=genome.fa"),
    (["train", "--genome", "a=GENOME", "--genome-window", "64", "-o", "m.gmx"], "at least two classes"),
    (["train", "--genome", "a=PLAIN_GZ", "--genome", "b=GENOME", "--genome-window", "64", "-o", "m.gmx"], "not bgzip"),
    (["train", "--bed", "x.bed", "-o", "m.gmx"], "--bed needs --reference"),
    (["train", "-o", "m.gmx"], "nothing to train on"),
    (["predict", "MODEL", "SAMPLE", "--shard", "3/2"], "--shard 3/2: I must be between 1 and N"),
    (["predict", "MODEL", "SAMPLE", "--shard", "x"], "expected I/N"),
])
def test_genome_user_errors(genomes, tmp_path, monkeypatch, trained_model, test_fa, genomix_main, user_error, args,
                            fragment):
    plain_gz = tmp_path / "plain.fa.gz"
    plain_gz.write_bytes(gzip.compress(genomes["gc"].read_bytes()))
    names = {"GENOME": str(genomes["gc"]), "PLAIN_GZ": str(plain_gz), "MODEL": str(trained_model),
             "SAMPLE": str(test_fa)}
    for placeholder, value in names.items():
        args = [a.replace(placeholder, value) for a in args]
    monkeypatch.chdir(tmp_path)
    user_error(genomix_main(*args), fragment)
    assert not (tmp_path / "m.gmx").exists()

