"""The planted-motif figures of docs/EXPLAIN.md: the test's own model and held-out positives
(tests/test_explain.py, `planted_model`), with more records per method than the test explains.

    python bench/explain_planted.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_explain  # noqa: E402  (the generator, the model's settings and the AUROC, as the tests use them)

from genomix.applying.explaining import attribute  # noqa: E402
from genomix.console import console  # noqa: E402

RECORDS = {"ism": 100, "gradient": 300, "ig": 30}


def main() -> None:
    torch.set_num_threads(1)
    console.quiet = True
    model, positives, inside = test_explain.planted_model.__wrapped__()
    result, ism = {}, None
    for method, count in RECORDS.items():
        explained = attribute(model, positives[:count], method, device="cpu")
        result[method] = {"records": len(explained), "auroc": round(test_explain.motif_auroc(explained, inside), 4)}
        if ism is None:
            ism = explained
        else:
            result[method]["median_spearman_with_ism"] = round(float(np.median(
                [spearmanr(a.scores, b.scores)[0] for a, b in zip(ism, explained)])), 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
