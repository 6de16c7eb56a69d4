"""Speed of `genomix explain`: ISM against the gradient methods on the same sequences, side by side in one run.

ISM rescores every substitution (3 per base, each window that covers it, each strand); gradient × input takes
one forward and one backward pass of the one-hot path; integrated gradients REFERENCES × IG_STEPS of those at
points between one-hot ones, where k-mers are weighted rather than looked up. The target: the gradient method
at least 50x faster than ISM per sequence. The network's speed does not depend on its weights, so without
--model an untrained network of the default configuration is timed (its k-mer term blended in at 0.5, so that
the term's cost is counted).

    python bench/explain_speed.py                          # 1,000 sequences of 81 bp on the CPU, one thread
    python bench/explain_speed.py --model m.gmx --device cuda
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from genomix.applying.explaining import attribute
from genomix.console import console as genomix_console
from genomix.io.reading import Record
from genomix.models import DEFAULT_MODEL, create_model
from genomix.models.modelfile import TrainedModel, load_model

from provenance import code_version


def untrained(length: int) -> TrainedModel:
    torch.manual_seed(0)
    network = create_model(DEFAULT_MODEL, 2, length)
    network.set_composition_weight(0.5)
    return TrainedModel.of(network.eval(), ["negative", "positive"])


def timed(model: TrainedModel, records: list[Record], method: str, device: str, batch_size: int) -> float:
    """Seconds per sequence."""
    started = time.perf_counter()
    attribute(model, records, method, device=device, batch_size=batch_size, max_passes=10**12)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A model file; default: an untrained default-configuration network")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--length", type=int, default=81)
    parser.add_argument("--ig-records", type=int, default=100, help="Integrated gradients on the first N only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    genomix_console.quiet = True
    model = load_model(args.model) if args.model else untrained(args.length)
    rng = np.random.default_rng(0)
    records = [Record(f"s{i}", "".join(rng.choice(list("ACGT"), args.length))) for i in range(args.records)]
    attribute(model, records[:4], "gradient", device=args.device)  # warm-up: kernels built, caches filled
    gradient = timed(model, records, "gradient", args.device, args.batch_size)
    ism = timed(model, records, "ism", args.device, args.batch_size)
    ig = timed(model, records[: args.ig_records], "ig", args.device, args.batch_size)
    result = {"code": code_version(), "model": args.model or f"untrained {DEFAULT_MODEL}", "device": args.device,
              "threads": args.threads, "records": args.records, "length": args.length,
              "both_strands": model.scores_both_strands(None),
              "ms_per_sequence": {"ism": round(ism * 1e3, 3), "gradient": round(gradient * 1e3, 3),
                                  "ig": round(ig * 1e3, 3)},
              "ism_over_gradient": round(ism / gradient, 1), "ism_over_ig": round(ism / ig, 2)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
