"""`genomix embed`: the pooled features of each record, for clustering and for users' own downstream models.

Records are embedded as `predict` scores them (windows, and strands for a two-strand model, averaged), in
input order. `.parquet` gets one row per record (id, length, e0 … e{F-1}), streamed in row groups; `.npy` gets
the (records, F) float32 matrix, and the ids, one per line, in a file beside it named `<output>.ids`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genomix.applying.scoring import BATCH_SIZE, embeddings
from genomix.console import console
from genomix.io.files import atomic_path, check_outputs
from genomix.io.formats import output_format
from genomix.io.sources import RecordSource
from genomix.io.writers import ParquetRows, output_stream
from genomix.models.modelfile import KINDS, load_model

FORMATS = ("parquet", "npy")  # `genomix.io.formats`; a file either way (binary: not stdout)


def embed(model_path: str | Path, source: RecordSource, output: str | Path, batch_size: int = BATCH_SIZE,
          device: str = "auto", rc: bool | None = None, format: str | None = None, precision: str = "auto") -> int:
    """Write the embedding of every record of `source` to `output` (in `format`, else by suffix, see above);
    return the count."""
    source.require("embed", genomes=False)
    kind = output_format(output, FORMATS, None, chosen=format)
    inputs = [*source.files, str(model_path)]
    check_outputs([("-o", output), ("-o", f"{output}.ids" if kind == "npy" else None)], inputs)
    model = load_model(model_path, kinds=KINDS)  # a backbone's pooled features are embeddings too
    rows = embeddings(model, source.records(), batch_size, device, rc, precision)
    count = _parquet(rows, output, inputs, model.network.embed_dim) if kind == "parquet" else \
        _npy(rows, output, inputs)
    console.log(f"wrote {count} embeddings of {model.network.embed_dim} features to {output}")
    return count


def _parquet(rows, output: str | Path, inputs: list[str], width: int) -> int:
    count = 0
    with output_stream(output, inputs, binary=True) as out:
        table = ParquetRows(out, [("id", "string"), ("length", "int64"), *((f"e{i}", "float32") for i in range(width))])
        for record, features in rows:
            table.add((record.id, len(record.seq), *features.astype(np.float32)))
            count += 1
        table.close()
    return count


def _npy(rows, output: str | Path, inputs: list[str]) -> int:
    ids, matrix = [], []
    for record, features in rows:
        ids.append(record.id)
        matrix.append(features.astype(np.float32))
    # The ids commit only after the matrix has: a failure in either leaves neither file behind.
    with output_stream(f"{output}.ids", inputs) as names, atomic_path(output, inputs) as tmp, open(tmp, "wb") as out:
        np.save(out, np.stack(matrix) if matrix else np.zeros((0, 0), np.float32))
        names.write("".join(f"{i}\n" for i in ids))
    return len(ids)
