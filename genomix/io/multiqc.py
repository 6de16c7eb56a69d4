"""Summaries as MultiQC custom content: a file named `*_mqc.json` or `*_mqc.tsv` is found by MultiQC without
configuration and shown as a section of its report, one sample per file (the name before `_mqc`).

`predict`, `scan` and `evaluate` write their `--report` this way when its name asks for it (records, or windows,
per called class as a bar graph), and `evaluate` its metrics (`-o`, a table). Any other name gets the TSV.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from genomix.io.formats import is_stdout
from genomix.io.writers import Report

SUFFIXES = {"_mqc.json": "json", "_mqc.tsv": "tsv"}


def custom_content(path: str | Path | None) -> str | None:
    """json or tsv for a MultiQC custom-content name, else None."""
    if is_stdout(path):
        return None
    name = Path(path).name.lower()
    return next((kind for suffix, kind in SUFFIXES.items() if name.endswith(suffix)), None)


def sample_of(path: str | Path) -> str:
    name = Path(path).name
    return name[: name.lower().rindex("_mqc")]


def write_summary(report: Report, path: str | Path | None, out: IO, command: str) -> None:
    """The report as MultiQC custom content when `path` names it so (a bar graph of the records per called
    class, `unclassified` included), else as its TSV."""
    kind = custom_content(path)
    if kind is None:
        report.write(out)
        return
    counts = {label: report.records[label] for label in report.labels}
    section = {"id": f"genomix_{command}", "section_name": f"genomix {command}", "plot_type": "bargraph",
               "description": f"{report.unit.capitalize()} per called class (genomix {command})",
               "pconfig": {"id": f"genomix_{command}_plot", "title": f"genomix {command}: {report.unit} per class",
                           "ylab": report.unit}}
    _write(section, {sample_of(path): counts}, kind, out)


def write_metrics(metrics: Mapping[str, object], path: str | Path | None, out: IO) -> None:
    """`evaluate`'s metrics as a MultiQC table when `path` names it so (one row, the sample; a column per
    scalar metric), else as JSON."""
    if custom_content(path) is None:
        out.write(json.dumps(metrics, indent=2) + "\n")
        return
    row = {name: value for name, value in metrics.items() if isinstance(value, (int, float)) and value is not None}
    section = {"id": "genomix_evaluate_metrics", "section_name": "genomix evaluate", "plot_type": "table",
               "description": "Metrics of the model on labelled sequences (genomix evaluate)",
               "pconfig": {"id": "genomix_evaluate_table", "title": "genomix evaluate"}}
    _write(section, {sample_of(path): row}, custom_content(path), out)


def _write(section: dict, data: dict[str, Mapping[str, object]], kind: str, out: IO) -> None:
    if kind == "json":
        out.write(json.dumps(section | {"data": data}, indent=2) + "\n")
        return
    for key, value in section.items():  # the TSV's configuration: YAML in comment lines
        out.write(f"# {key}: {json.dumps(value)}\n")
    columns = list(next(iter(data.values())))
    out.write("\t".join(["Sample", *columns]) + "\n")
    for sample, values in data.items():
        out.write("\t".join([sample, *(str(values[c]) for c in columns)]) + "\n")
