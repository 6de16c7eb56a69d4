"""Fuzz tests of the readers of VCF, BED and model files, as tests/test_hardening.py has for sequence files: a
mutated file (lines cut, copied or dropped, fields replaced by odd text, random bytes; a model header with any
field of any JSON type) is read, or refused with a one-line GenomixError; never another exception.

Every crash these found is kept as an explicit @example.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from genomix.applying.novelty import novelty_of
from genomix.applying.variants import score_variants
from genomix.errors import GenomixError
from genomix.io.genomes import Genome, parse_region_id, read_regions
from genomix.io.reading import check_name
from genomix.models.modelfile import METADATA_KEY, describe, load_model, read_card, read_header

FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
BASES = "ACGTTGCAAGCTAGCTTACG" * 15  # chr1, 300 bases
GENOME = f">chr1\n{BASES}\n>chr2\nACGTACGTAC\n"
VCF = ("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=300>\n"
       '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">\n'
       '##FORMAT=<ID=GT,Number=1,Type=String,Description="genotype">\n'
       "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\n"
       f"chr1\t50\trs1\t{BASES[49]}\tT\t30\tPASS\tDP=3\tGT\t0/1\n"
       f"chr1\t60\t.\t{BASES[59:62]}\t{BASES[59]},<DEL>\t.\t.\t.\tGT\t1|1\n"
       f"chr1\t70\t.\t{BASES[69]}\t{BASES[69]}AAA\t.\t.\tDP=1\tGT\t./.\n")
BED = "track name=x\n#comment\nchr1\t10\t80\tx\t0\t+\nchr1\t100\t150\ty\t0\t-\nchr2 0 5\n"
PIECES = ["\t", " ", ".", ",", ";", "=", "<", ">", "[", "]", "*", "-", "+", "0", "1", "-1", "A", "c", "N", "chr1",
          "chr2", "chrX", "#", "##", "\r", "\x00", "é", "1e3", "99999999999999999999", "\\", '"', "GT", "DP", "PASS",
          "DP=abc", "DP=1,2", "END=5", "<INS>", "A]chr1:5]", "0/1:3", "GT:DP", "nan", "inf", "2147483648"]
FIELD = st.lists(st.sampled_from(PIECES), max_size=4).map("".join)


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """`text` with one to three lines cut short, copied, dropped, or with a field replaced or inserted."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["cut", "copy", "drop", "replace", "insert"]))
        if op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "copy":
            lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
        elif op == "drop" and len(lines) > 1:
            del lines[i]
        elif op in ("replace", "insert"):
            fields = lines[i].split("\t")
            j = draw(st.integers(0, len(fields) - 1))
            fields[j : j + (op == "replace")] = [draw(FIELD)]
            lines[i] = "\t".join(fields)
    return "\n".join(lines)


def file_bytes(text: str) -> st.SearchStrategy[bytes]:
    """Mutations of `text` (some gzipped, some cut short), and random bytes."""
    data = mutated(text).map(lambda t: t.encode("utf-8", "surrogatepass"))
    packed = data.map(gzip.compress) | data.map(lambda d: gzip.compress(d)[: len(d) // 2])
    return st.one_of(data, data, packed, st.binary(max_size=300))


def read_or_refuse(read: Any) -> Any:
    """What `read()` returns, or None where it raises a GenomixError, which must be one line."""
    try:
        return read()
    except GenomixError as err:
        assert "\n" not in str(err)
        return None


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "g.fa").write_text(GENOME)
    Genome(folder / "g.fa")  # indexed once, before the examples
    return folder


# --- VCF ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(trained_model: Path):
    return load_model(trained_model)


# a record without the FORMAT and sample columns that the header declares: htslib read it, and could not write it
# back into the .vcf output (ValueError: number of samples does not match header)
@example(data=VCF.replace("DP=1\tGT\t./.\n", "DP=1\n").encode())
@FUZZ
@given(data=file_bytes(VCF))
def test_any_vcf_is_scored_or_refused_in_one_line(scratch, classifier, data):
    path = scratch / "calls.vcf"
    path.write_bytes(data)
    for output in ("effects.tsv", "effects.vcf"):
        read_or_refuse(partial(score_variants, classifier, path, scratch / "g.fa", scratch / output, device="cpu"))


# --- BED ---------------------------------------------------------------------------------------------------------

# a strand of '+-' passed the test `strand in "+-."`, and gave the region the id chr1:10-80(+-)
@example(data=BED.replace("0\t+\n", "0\t+-\n").encode())
# a name with a control character became the records' label unchecked, which breaks TSV output
@example(data=BED.replace("\tx\t", "\tx\x01y\t").encode())
@FUZZ
@given(data=file_bytes(BED))
def test_any_bed_is_read_or_refused_in_one_line(scratch, data):
    path = scratch / "regions.bed"
    path.write_bytes(data)
    records = read_or_refuse(lambda: list(read_regions([str(path)], str(scratch / "g.fa"))))
    for record in records or []:  # what is read can be written back: its id names the region, its label is a name
        assert parse_region_id(record.id) is not None, record.id
        assert record.label is None or check_name(record.label, "label", "") == record.label


# --- model files -------------------------------------------------------------------------------------------------

KEYS = ["format", "format_version", "tokenizer", "model", "config", "config.max_len", "config.dim", "config.layers",
        "config.factor_mlp", "classes", "classes.0", "positive_class", "both_strands", "temperature", "kind",
        "genomix_version", "training", "training.records", "training.class_counts", "training.length_range",
        "training.length_range.1", "training.settings", "training.settings.genome_window", "training.epochs_run",
        "training.seconds", "training.inputs", "training.strand_signal", "training.composition_weight",
        "training.best_epoch", "training.history", "training.initialised_from", "training.extra", "validation",
        "validation.accuracy", "validation.auroc", "validation.masked_loss", "novelty", "novelty.method",
        "novelty.known_recall", "novelty.thresholds", "novelty.thresholds.combined", "novelty.spread",
        "novelty.profile", "novelty.profile.whiten", "novelty.markov", "novelty.features", "novelty.combined"]
DELETE = object()
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 100), st.sampled_from([2**31, 2**63, 10**30]),
                    st.floats(), st.text(max_size=4))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                        max_size=3), max_leaves=6)


def changed(header: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """`header` with the value at the dotted `key` replaced (or deleted), where its parent exists."""
    header = copy.deepcopy(header)
    *parents, last = key.split(".")
    node = header
    for part in parents:
        node = node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else \
            node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node) and value is not DELETE:
        node[int(last)] = value
    return header


@pytest.fixture(scope="module")
def model_parts(trained_model: Path) -> tuple[dict[str, Any], dict]:
    with safe_open(str(trained_model), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    return read_header(trained_model), tensors


def read_model(path: Path) -> None:
    """Everything genomix reads of a model file: `info` (the card, described), and the model with its novelty
    statistics, as predict loads them."""
    describe(read_card(path))
    novelty_of(load_model(path))


# fields of the free-form blocks used as they were, unchecked: each crashed `genomix info` or predict
@example(key="training.length_range", value=3)  # TypeError: 'int' object is not subscriptable
@example(key="training.class_counts", value=[])  # AttributeError: 'list' object has no attribute 'items'
@example(key="validation.accuracy", value="x")  # ValueError: Unknown format code 'f' for object of type 'str'
@example(key="novelty.thresholds", value=1.5)  # AttributeError: 'float' object has no attribute 'get'
@example(key="novelty.known_recall", value={})  # unsupported format string passed to dict.__format__
@example(key="novelty.spread", value=["msp", "kmer"])  # AttributeError: 'list' object has no attribute 'items'
@example(key="training.initialised_from", value={"frozen": True})  # KeyError: 'file'
@FUZZ
@given(key=st.sampled_from(KEYS), value=JSON | st.just(DELETE))
def test_any_model_header_is_read_or_refused_in_one_line(scratch, model_parts, key, value):
    header, tensors = model_parts
    path = scratch / "changed.gmx"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(changed(header, key, value))})
    read_or_refuse(lambda: read_model(path))


@FUZZ
@given(cut=st.integers(0, 2000), at=st.integers(0, 2000), junk=st.binary(min_size=1, max_size=16))
def test_a_truncated_or_overwritten_model_file_is_refused_in_one_line(scratch, trained_model, cut, at, junk):
    """The first bytes (the header's length, the JSON header) cut short or overwritten, a huge length among them."""
    data = bytearray(trained_model.read_bytes())
    data[at : at + len(junk)] = junk
    path = scratch / "mangled.gmx"
    path.write_bytes(bytes(data[: len(data) - cut]))
    read_or_refuse(lambda: read_model(path))


@pytest.mark.parametrize("temperature", [math.nan, math.inf, 0, -1])
def test_a_temperature_that_is_not_a_positive_number_is_refused(scratch, model_parts, temperature):
    """The log-probabilities are divided by it: read as it was, it gave every record NaN (or inverted) scores."""
    header, tensors = model_parts
    path = scratch / "temperature.gmx"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(changed(header, "temperature", temperature))})
    with pytest.raises(GenomixError, match="corrupt model file \\(temperature "):
        read_card(path)
