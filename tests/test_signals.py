"""Interruptions through the real entry point: SIGTERM ends with one line, its exit code and nothing partial;
train gives the command that resumes it; a reader that closes the pipe ends predict quietly."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

from helpers import TINY


def genomix(*args, **kwargs) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "GENOMIX_COMPILE": "0"}
    return subprocess.Popen([sys.executable, "-m", "genomix", *map(str, args)], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, **kwargs)


def test_sigint_and_sigterm_during_train_keep_the_checkpoint_and_give_the_command_to_resume(train_fa, tmp_path):
    options = [a if a != "1" or TINY[i - 1] != "--epochs" else "200" for i, a in enumerate(TINY)]
    cases = ((signal.SIGINT, 130, "genomix: interrupted"), (signal.SIGTERM, 143, "genomix: terminated"))
    runs = []
    for sig, _, _ in cases:  # both started at once: the interpreters start side by side
        (tmp_path / sig.name).mkdir()
        args = ["train", train_fa, "-o", tmp_path / sig.name / "m.gmx", *options, "--patience", "200"]
        runs.append((genomix(*args), tmp_path / sig.name, args))
    deadline = time.time() + 240
    for (proc, folder, args), (sig, code, last) in zip(runs, cases):
        while not (folder / "m.gmx.ckpt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        lines = stderr.decode().splitlines()
        assert proc.returncode == code, stderr.decode()[-2000:]
        assert lines[-1] == last
        again = shlex.join(["genomix", *map(str, args), "--resume"])
        assert lines[-2] == f"genomix: {folder / 'm.gmx.ckpt'} holds the last finished epoch; to continue: {again}"
        assert sorted(p.name for p in folder.iterdir()) == ["m.gmx.ckpt"]  # no model, no temporary file


def test_predict_into_a_pipe_that_closes_ends_quietly(trained_model, test_fa):
    proc = genomix("predict", trained_model, test_fa, test_fa, test_fa, "--batch-size", "4")
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    proc.wait(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr.read()


def test_sigint_and_sigterm_during_predict_leave_nothing_at_the_output(trained_model, test_fa, tmp_path):
    cases = ((signal.SIGINT, 130, "genomix: interrupted"), (signal.SIGTERM, 143, "genomix: terminated"))
    # both started at once: the interpreters start side by side
    procs = [genomix("predict", trained_model, *[test_fa] * 40, "--batch-size", "1", "-o", tmp_path / f"p{code}.tsv",
                     "--device", "cpu") for _, code, _ in cases]
    for proc in procs:
        while b"model paramixer" not in proc.stderr.readline():  # the model is loaded: scoring has begun
            assert proc.poll() is None
    time.sleep(1)
    for proc, (sig, code, line) in zip(procs, cases):
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == code and stderr.decode().splitlines()[-1] == line, stderr.decode()[-1000:]
    assert list(tmp_path.iterdir()) == [], "no output and no temporary file"
