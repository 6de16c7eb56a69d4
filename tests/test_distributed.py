"""Data-parallel training: `torchrun --nproc-per-node 2` on the CPU (gloo) against a single process."""

import os
import subprocess
import sys
from pathlib import Path

from helpers import accuracy, motif_records

from genomix.fitting import distributed
from genomix.models.modelfile import load_model

# The settings of the `motif_paramixer` fixture, the single-process run compared with.
OPTIONS = ["--dim", "32", "--hidden", "32", "--layers", "1", "--batch-size", "16", "--epochs", "20", "--lr", "3e-3",
           "--dropout", "0.1", "--no-composition", "--seed", "1", "--device", "cpu"]


def write_fasta(records, path: Path) -> Path:
    path.write_text("".join(f">{r.id} label={r.label}\n{r.seq}\n" for r in records))
    return path


def test_two_processes_train_a_model_as_good_as_one(tmp_path, motif_paramixer):
    train = write_fasta(motif_records(400, seed=0), tmp_path / "train.fa")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "genomix", "train", train, "-o", tmp_path / "two.gmx", *OPTIONS],
                         capture_output=True, env=env)
    assert ddp.returncode == 0, ddp.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.fa", "two.gmx"]  # one file, no checkpoint
    stderr = ddp.stderr.decode()
    assert stderr.count("wrote ") == 1  # only rank 0 reports

    held_out = motif_records(200, seed=99)
    one, two = motif_paramixer, load_model(tmp_path / "two.gmx")
    assert two.card.training.processes == 2 and one.card.training.processes == 1
    assert two.card.training.settings == one.card.training.settings  # the same run but for the processes
    # Chance is 0.5 (standard deviation 0.035 on 200 sequences); both must learn, and to a similar level.
    acc_one, acc_two = accuracy(one, held_out), accuracy(two, held_out)
    assert acc_one > 0.7 and acc_two > 0.7
    assert abs(acc_one - acc_two) < 0.15


def test_share_gives_every_rank_an_equal_disjoint_share(monkeypatch):
    shares = []
    for rank in range(3):
        monkeypatch.setenv("WORLD_SIZE", "3")
        monkeypatch.setenv("RANK", str(rank))
        shares.append(distributed.share(list(range(8))))
    assert shares == [[0, 3], [1, 4], [2, 5]]  # 8 // 3 = 2 each: every rank takes as many steps
