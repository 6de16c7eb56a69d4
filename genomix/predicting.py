"""`genomix predict`: every record of a source scored and written, one row per record, in input order.

Records stream through `genomix.scoring` a chunk at a time, so memory stays constant on any input size.
"""

from __future__ import annotations

from functools import partial
from itertools import islice
from pathlib import Path

from genomix.console import console
from genomix.errors import GenomixError
from genomix.files import check_writable
from genomix.modelfile import load_model
from genomix.scoring import BATCH_SIZE, check_threshold, decide, predict_records
from genomix.sources import RecordSource
from genomix.writers import is_stdout, output_stream, writer_for


def parse_shard(shard: str) -> tuple[int, int]:
    """`I/N` (1-based, as `split -n l/I/N`) → (I - 1, N)."""
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise GenomixError(f"--shard {shard}: expected I/N, e.g. 1/4") from None
    if not 1 <= index <= count:
        raise GenomixError(f"--shard {shard}: I must be between 1 and N")
    return index - 1, count


def predict(
    model_path: str | Path,
    source: RecordSource,
    output: str | Path | None = None,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    rc: bool | None = None,
    threshold: float | None = None,
    shard: str | None = None,
) -> int:
    """Score every record of `source` into `output` ('-' or None: stdout as TSV; else by suffix, see
    `genomix.writers`); return the number of rows.

    With `threshold` (binary models only), a record is called positive when p_positive ≥ threshold.
    With `shard` "I/N", only records I, I+N, I+2N... are scored, so N jobs together score every record once.
    """
    source.require("score", genomes=False)
    first, step = parse_shard(shard) if shard else (0, 1)
    writer_class = writer_for(output)
    inputs = [*source.files, str(model_path)]
    if not is_stdout(output):
        check_writable(output, inputs)
    model = load_model(model_path)
    check_threshold(threshold, model)
    console.log(f"model {model.network.name} ({', '.join(model.classes)}); sequences longer than "
                f"{model.max_len} bp are scored as windows of {model.max_len} bp with log-probabilities averaged")
    records = islice(source.records(), first, None, step)
    call = partial(decide, threshold=threshold, positive=model.positive_index)
    with output_stream(output, inputs) as out:
        writer = writer_class(out, model.classes, call)
        writer.begin()
        for prediction in predict_records(model, records, batch_size, device, rc):
            writer.write(prediction)
    if not is_stdout(output):
        console.log(f"wrote {writer.rows} predictions to {output}")
    return writer.rows
