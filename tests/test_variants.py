"""`genomix variants`: each allele's effect equals predict on its two windows (and the ISM core for an SNV),
the windows rule on hand-made cases, planted motifs found, outputs read back, bad inputs refused."""

from __future__ import annotations

import csv
import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pysam
import pytest
from sklearn.metrics import roc_auc_score

from genomix.applying.effects import BASES, substitution_effects
from genomix.applying.scoring import Scorer, log_odds, predict_records
from genomix.applying.variants import allele_windows, info_key, score_variants, skip_reason
from genomix.errors import GenomixError
from genomix.fitting.training import TrainSettings, train
from genomix.io.reading import Record, read_records
from genomix.io.sources import RecordSource
from genomix.models.modelfile import load_model
from genomix.sequences.tokens import encode

FIXTURE = Path(__file__).parent / "fixtures" / "v0_paramixer.gmx"  # max_len 64, scored on both strands
HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def vcf_text(rows: list[tuple]) -> str:
    """A VCF of (chrom, pos, id, ref, alt) rows."""
    return HEADER + "".join("\t".join(map(str, row)) + "\t.\t.\t.\n" for row in rows)


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path) as file:
        return list(csv.DictReader(file, delimiter="\t"))


@pytest.fixture(scope="module")
def genome(tmp_path_factory, test_fa) -> tuple[Path, dict[str, str]]:
    """A reference of two contigs of real DNA (sample records of 300+ bases)."""
    records = [r for r in read_records(test_fa) if len(r.seq) >= 300][:2]
    contigs = {"chrA": records[0].seq, "chrB": records[1].seq}
    path = tmp_path_factory.mktemp("genome") / "ref.fa"
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in contigs.items()))
    return path, contigs


@pytest.mark.parametrize(("start", "ref", "alt", "width", "expected"), [
    (10, "k", "X", 5, ("ijklm", "ijXlm")),  # SNV: the same window, one base changed
    (10, "kl", "XY", 6, ("ijklmn", "ijXYmn")),  # MNV
    (10, "k", "kXYZ", 6, ("ijklmn", "jkXYZl")),  # insertion: both flanks lose bases, ALT stays centred
    (10, "klm", "k", 5, ("jklmn", "ijkno")),  # deletion: flanks taken further from the reference
    (10, "k", "X", 4, ("jklm", "jXlm")),  # (W - r) odd: one more base after the allele than before
    (1, "b", "X", 7, ("abcde", "aXcde")),  # near the start: the windows are cut at the contig's start
    (24, "y", "X", 7, ("vwxyz", "vwxXz")),  # near the end: cut at the end
    (3, "d", "XX", 40, (LETTERS[:24], "abcXX" + LETTERS[4:23])),  # cut, not shifted: 16 bases short at the start
    (3, "d", "XX", 60, (LETTERS, "abcXX" + LETTERS[4:])),  # over twice the contig's length: the whole contig
])
def test_windows_rule(start, ref, alt, width, expected):
    def fetch(lo: int, hi: int) -> str:
        assert 0 <= lo <= hi <= len(LETTERS)
        return LETTERS[lo:hi]

    assert LETTERS[start : start + len(ref)] == ref
    assert allele_windows(fetch, len(LETTERS), start, ref, alt, width) == expected


@pytest.mark.parametrize(("alt", "reason"), [
    ("C", None), ("ACGTN", None), ("<DEL>", "symbolic (<...>)"), ("G]chrA:100]", "breakend"), (".A", "breakend"),
    ("*", "spanning deletion (*)"), (None, "without ALT"), ("R", "ALT not A/C/G/T/N"),
    ("A" * 65, "allele longer than the window (64)"),
])
def test_alleles_not_scored_have_a_reason(alt, reason):
    assert skip_reason(alt, "A", 64) == reason


def test_class_names_become_vcf_keys():
    assert info_key("log_odds", "promoter") == "log_odds_promoter"
    assert info_key("alt", "E. coli K-12") == "alt_E._coli_K_12"


def test_two_classes_that_give_one_vcf_key_are_refused_before_any_reading(tmp_path):
    model = load_model(FIXTURE)
    clash = replace(model, card=replace(model.card, classes=["E-coli", "E_coli"], positive_class="E_coli"))
    with pytest.raises(GenomixError, match=r"classes E-coli, E_coli give the same INFO keys and columns \(ref_E_coli"):
        score_variants(clash, tmp_path / "none.vcf", tmp_path / "none.fa", tmp_path / "e.tsv", device="cpu")


def expected_rows(model, contigs: dict[str, str], cases: list[tuple], rc: bool | None = None) -> list[np.ndarray]:
    """predict's log-probabilities of hand-cut (reference, alternative) windows of the 64-base model: (64 - the
    allele's length) // 2 reference bases before the allele, the allele, the following bases up to 64."""
    windows = []
    for chrom, pos, ref, alt in cases:
        seq, p = contigs[chrom], pos - 1
        left, alt_left = (64 - len(ref)) // 2, (64 - len(alt)) // 2
        windows.append(seq[max(p - left, 0) : p - left + 64])
        end = p + len(ref)
        windows.append(seq[max(p - alt_left, 0) : p] + alt + seq[end : end + 64 - len(alt) - alt_left])
    assert all(len(w) == 64 for w in windows[:-2])  # all but the last case are far from the contig ends
    records = [Record(str(i), w) for i, w in enumerate(windows)]
    return [p.log_probs for p in predict_records(model, records, device="cpu", rc=rc)]


@pytest.mark.parametrize("rc", [None, False])  # as the model file says (both strands), and one strand
def test_each_allele_equals_predict_on_its_two_windows(genome, tmp_path, rc):
    path, contigs = genome
    a, b = contigs["chrA"], contigs["chrB"]
    swap = {base: BASES[(BASES.index(base) + 1) % 4] for base in BASES}
    cases = [("chrA", 100, a[99], swap[a[99]]),  # SNV
             ("chrA", 150, a[149:152], swap[a[149]] + a[150] + swap[a[151]]),  # MNV
             ("chrA", 200, a[199], a[199] + "GATTACA"),  # insertion
             ("chrB", 120, b[119:131], b[119]),  # deletion
             ("chrB", 3, b[2], swap[b[2]])]  # near the contig's start: shorter windows
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text([(c, p, f"v{i}", r, alt) for i, (c, p, r, alt) in enumerate(cases)]))
    model = load_model(FIXTURE)
    summary = score_variants(model, vcf, path, tmp_path / "effects.tsv", device="cpu", rc=rc)
    assert (summary.records, summary.scored, sum(summary.skipped.values())) == (5, 5, 0)
    rows = read_tsv(tmp_path / "effects.tsv")
    assert [(r["chrom"], int(r["pos"]), r["ref"], r["alt"]) for r in rows] == cases
    expected = expected_rows(model, contigs, cases, rc)
    for i, row in enumerate(rows):
        ref, alt = expected[2 * i], expected[2 * i + 1]
        for c, name in enumerate(model.classes):
            assert float(row[f"ref_{name}"]) == pytest.approx(np.exp(ref[c]), rel=1e-5)
            assert float(row[f"alt_{name}"]) == pytest.approx(np.exp(alt[c]), rel=1e-5)
            assert float(row[f"log_odds_{name}"]) == pytest.approx(log_odds(alt, c) - log_odds(ref, c), rel=1e-4,
                                                                  abs=1e-6)
    assert max(abs(float(r["log_odds_escherichia_coli"])) for r in rows) > 0.01  # the alleles do change scores


def test_snv_effects_equal_the_ism_core(genome, tmp_path):
    """With a window longer than twice the contig, every window is the whole contig (tiled by the model's
    64-base windows), so an SNV's effect is `substitution_effects` (explain --method ism) at that base."""
    seq = genome[1]["chrB"][:150]  # three 64-base windows, the last two overlapping
    (tmp_path / "short.fa").write_text(f">short\n{seq}\n")
    positions = [0, 70, 149]
    rows = [("short", p + 1, ".", seq[p], alt) for p in positions for alt in BASES if alt != seq[p]]
    (tmp_path / "snvs.vcf").write_text(vcf_text(rows))
    score_variants(FIXTURE, tmp_path / "snvs.vcf", tmp_path / "short.fa", tmp_path / "snvs.tsv",
                   allele_window=2 * len(seq) + 1, device="cpu")
    scorer = Scorer.of(load_model(FIXTURE), device="cpu")
    tokens = encode(seq)
    tables = {p: substitution_effects(scorer, tokens, 1, p, p + 1)[0] for p in positions}
    got = [float(r["log_odds_escherichia_coli"]) for r in read_tsv(tmp_path / "snvs.tsv")]
    want = [tables[pos - 1][BASES.index(alt)] for _, pos, _, _, alt in rows]
    assert np.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_multi_allelic_records_and_outputs_read_back(genome, tmp_path):
    path, contigs = genome
    a = contigs["chrA"]
    other = [base for base in BASES if base != a[49]]
    rows = [("chrA", 50, "multi", a[49], f"{other[0]},<DEL>,*,{other[1]}"),
            ("chrA", 60, "bnd", a[59], f"{a[59]}]chrB:10]"),
            ("chrA", 70, "none", a[69], "."),
            ("chrB", 80, "snv", contigs["chrB"][79], other[2])]
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text(rows))
    tsv, vcf_gz = tmp_path / "effects.tsv", tmp_path / "effects.vcf.gz"
    summary = score_variants(FIXTURE, vcf, path, tsv, device="cpu")
    assert summary == score_variants(FIXTURE, vcf, path, vcf_gz, device="cpu")
    assert (summary.records, summary.scored) == (4, 3)
    assert summary.skipped == {"symbolic (<...>)": 1, "spanning deletion (*)": 1, "breakend": 1, "without ALT": 1}
    assert "not scored: " in summary.line()
    table = read_tsv(tsv)
    assert [(r["id"], r["alt"]) for r in table] == [("multi", other[0]), ("multi", other[1]), ("snv", other[2])]
    single = tmp_path / "single.vcf"  # the multi-allelic record's alleles score as records of their own
    single.write_text(vcf_text([("chrA", 50, "one", a[49], other[0]), ("chrA", 50, "two", a[49], other[1])]))
    score_variants(FIXTURE, single, path, tmp_path / "single.tsv", device="cpu")
    columns = [k for k in table[0] if k.startswith(("ref_", "alt_", "log_odds_"))]
    assert [[r[k] for k in columns] for r in read_tsv(tmp_path / "single.tsv")] == [
        [r[k] for k in columns] for r in table[:2]]

    assert (tmp_path / "effects.vcf.gz.tbi").is_file()
    with pysam.VariantFile(str(vcf_gz)) as out:
        assert out.header.info["log_odds_escherichia_coli"].number == "A"
        assert out.header.info["ref_escherichia_coli"].number == 1
        records = list(out)
        assert [r.id for r in records] == ["multi", "bnd", "none", "snv"]  # every input record, in order
        multi = records[0].info["log_odds_escherichia_coli"]
        assert multi[1] is None and multi[2] is None
        assert multi[0] == pytest.approx(float(table[0]["log_odds_escherichia_coli"]), rel=1e-5)
        assert multi[3] == pytest.approx(float(table[1]["log_odds_escherichia_coli"]), rel=1e-5)
        assert "ref_escherichia_coli" not in records[1].info
        assert [r.id for r in out.fetch("chrB", 70, 90)] == ["snv"]  # the tabix index works
    region = score_variants(FIXTURE, vcf_gz, path, tmp_path / "chrB.tsv", region="chrB:70-90", device="cpu")
    assert (region.records, [r["id"] for r in read_tsv(tmp_path / "chrB.tsv")]) == (1, ["snv"])
    score_variants(FIXTURE, vcf, path, tmp_path / "effects.vcf", device="cpu")
    with pysam.VariantFile(str(tmp_path / "effects.vcf")) as plain:
        assert [r.info.get("alt_escherichia_coli") for r in plain] == [
            r.info.get("alt_escherichia_coli") for r in pysam.VariantFile(str(vcf_gz))]


def test_format_names_the_vcf_output_whatever_the_target(genome, tmp_path, genomix_main):
    path, contigs = genome
    a = contigs["chrA"]
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text([("chrA", 50, "snv", a[49], next(b for b in BASES if b != a[49]))]))
    score_variants(FIXTURE, vcf, path, tmp_path / "effects.vcf", device="cpu")
    expected = [line for line in (tmp_path / "effects.vcf").read_text().splitlines() if not line.startswith("##")]
    piped = genomix_main("variants", FIXTURE, "--vcf", vcf, "--reference", path, "--format", "vcf", "-o", "-",
                         "--device", "cpu")
    assert piped.returncode == 0, piped.stderr
    assert [line for line in piped.stdout.decode().splitlines() if not line.startswith("##")] == expected
    score_variants(FIXTURE, vcf, path, tmp_path / "effects.txt", device="cpu", format="vcf")
    assert (tmp_path / "effects.txt").read_text() == (tmp_path / "effects.vcf").read_text()
    refused = genomix_main("variants", FIXTURE, "--vcf", vcf, "--reference", path, "--format", "vcf.gz", "-o", "-")
    assert refused.returncode == 2 and "--format vcf" in refused.stderr.decode()


def test_skip_mismatch_counts_instead_of_stopping(genome, tmp_path):
    path, contigs = genome
    wrong = BASES[(BASES.index(contigs["chrA"][9]) + 1) % 4]
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(vcf_text([("chrA", 10, ".", wrong, contigs["chrA"][9]),
                             ("chrA", 20, ".", contigs["chrA"][19], wrong)]))
    with pytest.raises(GenomixError, match="line 3 .*REF"):
        score_variants(FIXTURE, vcf, path, tmp_path / "e.tsv", device="cpu")
    assert not (tmp_path / "e.tsv").exists()
    summary = score_variants(FIXTURE, vcf, path, tmp_path / "e.tsv", skip_mismatch=True, device="cpu")
    assert (summary.scored, summary.skipped) == (1, {"REF mismatch": 1})


MOTIF = "TGACTCAGCA"


def test_variants_that_break_planted_motifs_have_larger_effects(tmp_path):
    """A k-mer model trained to tell random 64-mers with the motif from random 64-mers without; on a genome
    with the motif planted at 100 places, SNVs inside the motifs lower p(motif) more than SNVs elsewhere."""
    rng = np.random.default_rng(0)

    def random_dna(n: int) -> str:
        return "".join(rng.choice(list(BASES), n))

    def with_motif(n: int) -> str:
        seq, at = random_dna(n), int(rng.integers(0, n - len(MOTIF) + 1))
        return seq[:at] + MOTIF + seq[at + len(MOTIF) :]

    (tmp_path / "motif.fa").write_text("".join(f">m{i}\n{with_motif(64)}\n" for i in range(250)))
    (tmp_path / "background.fa").write_text("".join(f">b{i}\n{random_dna(64)}\n" for i in range(250)))
    source = RecordSource([f"motif={tmp_path / 'motif.fa'}", f"background={tmp_path / 'background.fa'}"])
    model = train(source, tmp_path / "motif.gmx", TrainSettings(arch="kmer", options={"k_max": 4}, max_len=64,
                                                                 device="cpu", seed=0))
    bases = list(random_dna(30_000))
    sites = [150 + 290 * i + int(rng.integers(0, 40)) for i in range(100)]
    for at in sites:
        bases[at : at + len(MOTIF)] = MOTIF
    seq = "".join(bases)
    (tmp_path / "syn.fa").write_text(f">syn\n{seq}\n")
    inside = {p for at in sites for p in range(at, at + len(MOTIF))}
    breaking = [at + int(rng.integers(0, len(MOTIF))) for at in sites]
    elsewhere = [int(p) for p in rng.permutation(len(seq)) if p not in inside][:100]
    variants = sorted([(p, "in") for p in breaking] + [(p, "out") for p in elsewhere])
    rows = [("syn", p + 1, kind, seq[p], rng.choice([b for b in BASES if b != seq[p]])) for p, kind in variants]
    (tmp_path / "syn.vcf").write_text(vcf_text(rows))
    score_variants(model, tmp_path / "syn.vcf", tmp_path / "syn.fa", tmp_path / "syn.tsv", device="cpu")
    table = read_tsv(tmp_path / "syn.tsv")
    assert len(table) == 200
    drop = np.array([-float(r["log_odds_motif"]) for r in table])
    assert roc_auc_score([r["id"] == "in" for r in table], drop) >= 0.95


# --- bad input: one line, exit code 2, nothing at -o -----------------------------------------------------

def _cases(contigs: dict[str, str]) -> dict[str, tuple[list[str], str, list[str]]]:
    """name → (extra arguments, VCF text, fragments the error line must hold); a case whose arguments name
    calls.vcf.gz gets its VCF gzipped (`--vcf` plain gzip) or bgzipped without an index (`--region`)."""
    a = contigs["chrA"]
    good = ("chrA", 10, ".", a[9], "ACGT".replace(a[9], "")[0])
    wrong = "ACGT".replace(a[19], "")[0]
    return {
        "malformed_pos": ([], vcf_text([good]) + "chrA\tten\t.\tA\tC\t.\t.\t.\n", ["calls.vcf: line 4", "POS 'ten'"]),
        "few_columns": ([], vcf_text([good]) + "chrA\t12\t.\tA\n", ["line 4", "4 tab-separated columns"]),
        "ref_mismatch": ([], vcf_text([good, ("chrA", 20, "rs7", wrong, a[19])]),
                         ["line 4 (chrA:20 rs7)", f"REF {wrong} but the reference has {a[19]}", "--skip-mismatch"]),
        "chr_prefix": ([], vcf_text([("A", 10, ".", a[9], "T")]),
                       ["line 3", "contig 'A' is not in the reference", "calls it 'chrA'"]),
        "region_not_bgzip": (["--region", "chrA"], vcf_text([good]), ["--region needs a bgzip", "bgzip calls.vcf"]),
        "unsorted": (["-o", "out/e.vcf.gz"], vcf_text([("chrB", 5, ".", contigs["chrB"][4], "A"), good,
                                                        ("chrB", 9, ".", contigs["chrB"][8], "A")]),
                     ["line 5", "not sorted", "bcftools sort"]),
        "plain_gzip": (["--vcf", "calls.vcf.gz"], vcf_text([good]), ["calls.vcf.gz: gzip but not bgzip", "| bgzip"]),
        "no_index": (["--vcf", "calls.vcf.gz", "--region", "chrA:1-100"], vcf_text([good]),
                     ["--region needs a tabix index", "tabix -p vcf calls.vcf.gz"]),
        "suffix": (["-o", "out/e.csv"], vcf_text([good]),
                   ["-o out/e.csv: unknown output format '.csv'", "choose .tsv, .vcf, .vcf.gz, or '-' for tsv"]),
    }


@pytest.mark.parametrize("case", ["malformed_pos", "few_columns", "ref_mismatch", "chr_prefix", "region_not_bgzip",
                                  "unsorted", "plain_gzip", "no_index", "suffix"])
def test_bad_input_is_one_line_and_leaves_nothing(genome, tmp_path, monkeypatch, genomix_main, user_error, case):
    path, contigs = genome
    args, text, fragments = _cases(contigs)[case]
    (tmp_path / "out").mkdir()
    (tmp_path / "calls.vcf").write_text(text)
    if "calls.vcf.gz" in args and "--region" in args:
        pysam.tabix_compress(str(tmp_path / "calls.vcf"), str(tmp_path / "calls.vcf.gz"))
    elif "calls.vcf.gz" in args:
        (tmp_path / "calls.vcf.gz").write_bytes(gzip.compress(text.encode()))
    defaults = [] if "--vcf" in args else ["--vcf", "calls.vcf"]
    defaults += [] if "-o" in args else ["-o", "out/e.tsv"]
    monkeypatch.chdir(tmp_path)
    proc = genomix_main("variants", FIXTURE, "--reference", path, "--device", "cpu", *defaults, *args)
    user_error(proc, *fragments)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_vcf_output_needs_every_field_declared_and_says_which_is_not(genome, tmp_path):
    path, contigs = genome
    text = vcf_text([("chrA", 10, ".", contigs["chrA"][9], "<DUP>")]).replace("\t.\t.\t.\n", "\t.\tlowq\t.\n")
    (tmp_path / "calls.vcf").write_text(text)
    with pytest.raises(GenomixError, match="line 3 .*FILTER/lowq"):
        score_variants(FIXTURE, tmp_path / "calls.vcf", path, tmp_path / "e.vcf", device="cpu")
    assert list(tmp_path.iterdir()) == [tmp_path / "calls.vcf"]
    summary = score_variants(FIXTURE, tmp_path / "calls.vcf", path, tmp_path / "e.tsv", device="cpu")  # TSV: fine
    assert summary.skipped == {"symbolic (<...>)": 1}
