"""Everything one lent GPU should measure, in one command that fits in 8 minutes, with the results written out.

Phases, each in its own process with its own share of the time budget (a phase that runs out is recorded as
such and the next one starts):

1. `tests/test_cuda.py` (the CUDA path against the CPU);
2. graph breaks and kernels per train step, eager and compiled (`bench/speed.py --kernels`);
3. the factor kernel's bandwidth beside a copy, and the train-step table for paramixer-cdil, paramixer-chord
   and transformer, N = 2^12 … 2^20, bf16, the whole step compiled and replayed as a CUDA graph;
4. real training: two epochs on human_nontata_promoters through `genomix.fitting.training.fit`, sequences per second;
5. inference: the default model's forward on 150-base reads, fp32 and bf16, batches of 64 and 1,024, read-strands
   per second (on a CPU rehearsal: batches of 64, one thread).

Then it writes the JSON (default `docs/speed_cuda.json`) and the tables, with the issue's targets checked,
between the GPU-script markers of `docs/PERFORMANCE.md`.

    bench/gpu.sh                                                  # on the GPU machine
    python bench/gpu.py --device cpu --small --data ../shared/data  # rehearsal on a CPU: small sizes, temp files
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- gpu-script:start -->", "<!-- gpu-script:end -->")
# Seconds each phase may take at most, out of the whole budget (full run on a GPU).
SHARES = {"tests": 100, "kernels": 40, "speed": 240, "training": 70, "inference": 30}


def run_phase(name: str, argv: list[str], deadline: float, env: dict | None = None) -> dict:
    """Run one phase with a timeout of its share (or what is left); its exit status and output tail."""
    timeout = max(10.0, min(SHARES[name], deadline - time.monotonic()))
    start = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))
        status, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        status, out = "timeout", (err.stdout or b"").decode(errors="replace") + (err.stderr or b"").decode(
            errors="replace")
    seconds = round(time.monotonic() - start, 1)
    print(f"[gpu.py] {name}: status {status} after {seconds} s", file=sys.stderr, flush=True)
    return {"status": status, "seconds": seconds, "tail": out[-4000:]}


def training_settings(device: str):
    """The training run measured: the CLI's defaults, two epochs (kept in one place for model renames)."""
    from genomix.fitting.training import TrainSettings

    return TrainSettings(arch="paramixer-cdil", device=device, epochs=2, seed=0)


def train_once(data: Path, device: str, small: bool) -> dict:
    """Child mode: two epochs on human_nontata_promoters; the per-epoch sequences per second from the log."""
    from genomix.fitting.training import fit
    from genomix.io.reading import read_inputs

    records = list(read_inputs([str(data / "human_nontata_promoters" / "train.fa.gz")]))
    if small:
        records = records[:: max(1, len(records) // 512)]
    start = time.perf_counter()
    model = fit(records, training_settings(device))
    history = model.metadata["training"]["history"]
    return {"sequences": len(records), "seconds": round(time.perf_counter() - start, 1),
            "seq_per_s_by_epoch": [round(e["seq_per_s"], 1) for e in history],
            "val_accuracy": history[-1].get("val_accuracy"), "device": model.metadata["training"]["device"]}


def infer_once(device: str, small: bool) -> list[dict]:
    """Child mode: read-strands per second of the default model's forward on 150-base reads, fp32 and bf16."""
    import torch

    from genomix.console import autocast
    from genomix.models import DEFAULT_MODEL, create_model

    torch_device = torch.device(device)
    model = create_model(DEFAULT_MODEL, 2, 150).to(torch_device).eval()
    rows = []
    for batch in (64,) if small else (64, 1024):
        tokens = torch.randint(0, 4, (batch, 150), device=torch_device)
        lengths = torch.full((batch,), 150, device=torch_device)
        for precision in ("fp32", "bf16"):
            with torch.no_grad(), autocast(torch_device, precision):
                model(tokens, lengths)  # kernel builds and autotuning
                reps = 3 if small else 20
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(reps):
                    model(tokens, lengths)
                if device == "cuda":
                    torch.cuda.synchronize()
            rows.append({"batch": batch, "precision": precision,
                         "reads_per_s": round(batch * reps / (time.perf_counter() - start), 1)})
    return rows


def load(path: Path) -> list | dict:
    return json.loads(path.read_text()) if path.exists() and path.stat().st_size else []


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def cell(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def check_targets(steps: list[dict], bandwidth: list[dict], training: dict | None) -> list[tuple[str, str, str]]:
    """(target, figure, met?) for the issue's GPU targets, from this run's rows."""
    by = {(r["protocol"] or r["model"], r["n"]): r for r in steps}
    sizes = sorted({r["n"] for r in steps})
    out = []

    def speedup(n: int, model: str = "cdil") -> float | None:
        return ratio(by.get(("transformer", n), {}).get("step_s"), by.get((model, n), {}).get("step_s"))

    ups = {n: speedup(n) for n in sizes if n >= 4096}
    if ups:
        figure = ", ".join(f"{n:,}: {u:.2f}x" if u else f"{n:,}: —" for n, u in ups.items())
        out.append(("cdil faster than the Transformer at every N from 4,096", figure,
                    "yes" if all(u and u > 1 for u in ups.values()) else "no"))
    for n, target in ((65536, 10), (2**20, 150)):
        if n in sizes:
            u = speedup(n)
            out.append((f"cdil ≥ {target}x faster at {n:,}", f"{u:.1f}x" if u else "not measured",
                        "yes" if u and u >= target else "no"))
    chord = {n: ratio(by.get(("chord", n), {}).get("step_s"), by.get(("cdil", n), {}).get("step_s")) for n in sizes}
    if any(chord.values()):
        worst = max(c for c in chord.values() if c)
        out.append(("CHORD within 2x of CDIL at every N", f"worst {worst:.2f}x",
                    "yes" if all(c and c <= 2 for c in chord.values()) else "no"))
    top = max(sizes) if sizes else None
    if top:
        m = ratio(by.get(("cdil", top), {}).get("peak_mem_bytes"),
                  by.get(("transformer", top), {}).get("peak_mem_bytes"))
        out.append((f"peak memory at {top:,} ≤ 1.5x the Transformer's", f"{m:.2f}x" if m else "not measured",
                    "yes" if m and m <= 1.5 else "no"))
    if bandwidth:
        best = max(r["step_gbps"] / r["copy_gbps"] for r in bandwidth)
        out.append(("factor kernel ≥ 60% of a copy's bandwidth", f"best {100 * best:.0f}% (fused step)",
                    "yes" if best >= 0.6 else "no"))
    if training and training.get("seq_per_s_by_epoch"):
        rate = max(training["seq_per_s_by_epoch"])
        out.append(("real training ≥ 20,000 sequences/s", f"{rate:,.0f} seq/s", "yes" if rate >= 20000 else "no"))
    return out


def markdown(report: dict) -> str:
    """The tables for docs/PERFORMANCE.md."""
    steps, bandwidth, kernels = report["steps"], report["bandwidth"], report["kernels"]
    lines = [f"Written by `bench/gpu.py` on {report['device_name']} ({report['torch']}), commit "
             f"{report['commit']}, {report['total_seconds']:.0f} s. Phases: " +
             ", ".join(f"{k} {v['status']} ({v['seconds']} s)" for k, v in report["phases"].items()) + ".", ""]
    base = {r["n"]: r for r in steps if r["model"] == "transformer"}
    lines += ["| model | N | step s | time ÷ transformer | peak MiB | memory ÷ transformer |",
              "|---|--:|--:|--:|--:|--:|"]
    for r in steps:
        t = base.get(r["n"], {})
        mib = r["peak_mem_bytes"] / 2**20 if r["peak_mem_bytes"] is not None else None
        cells = [f"{r['model']}-{r['protocol']}" if r["protocol"] else r["model"], f"{r['n']:,}",
                 cell(r["step_s"], ".4f"), cell(ratio(r["step_s"], t.get("step_s")), ".3f"), cell(mib, ".1f"),
                 cell(ratio(r["peak_mem_bytes"], t.get("peak_mem_bytes")), ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    if bandwidth:
        lines += ["", "| protocol | N | K | W V GB/s | V + W D V GB/s | copy GB/s | step % of copy |",
                  "|---|--:|--:|--:|--:|--:|--:|"]
        lines += [f"| {r['protocol']} | {r['n']:,} | {r['k']} | {r['gbps']:.1f} | {r['step_gbps']:.1f} | "
                  f"{r['copy_gbps']:.1f} | {100 * r['step_gbps'] / r['copy_gbps']:.0f}% |" for r in bandwidth]
    if kernels:
        lines += ["", "| model | N | graph breaks | kernels per step, eager | compiled |", "|---|--:|--:|--:|--:|"]
        lines += [f"| {r['model']}-{r['protocol']} | {r['n']:,} | {r['graph_breaks']} | {r['eager_kernels']} | "
                  f"{r['compiled_kernels']} |" for r in kernels]
    if report["training"]:
        t = report["training"]
        lines += ["", f"Real training, human_nontata_promoters ({t['sequences']:,} sequences, CLI defaults, 2 "
                      f"epochs, {t['device']}): " + " / ".join(f"{x:,.0f}" for x in t["seq_per_s_by_epoch"]) +
                  " sequences/s by epoch (epoch 1 includes kernel builds)."]
    if report.get("inference"):
        lines += ["", "Inference, default model, 150-base reads (bare forward): " + "; ".join(
            f"batch {r['batch']} {r['precision']} {r['reads_per_s']:,.0f} read-strands/s" for r in report["inference"])
            + "."]
    lines += ["", f"| target (measured on {report['device']}) | figure | met? |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in report["targets"]]
    return "\n".join(lines)


def write_doc(doc: Path, text: str) -> None:
    """Replace what stands between the markers (appending them at the end the first time)."""
    old = doc.read_text()
    block = f"{MARKERS[0]}\n{text}\n{MARKERS[1]}"
    if MARKERS[0] in old and MARKERS[1] in old:
        head, rest = old.split(MARKERS[0], 1)
        new = head + block + rest.split(MARKERS[1], 1)[1]
    else:
        new = old.rstrip() + "\n\n## GPU script results\n\n" + block + "\n"
    doc.write_text(new)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding human_nontata_promoters/ (default: ../shared/data from the repository)")
    parser.add_argument("--small", action="store_true", help="small sizes (N = 2^10 … 2^12, a subsample for training)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all phases (default: 480)")
    parser.add_argument("--json-out", type=Path, help="default: docs/speed_cuda.json on CUDA, a temp file on the CPU")
    parser.add_argument("--doc", type=Path,
                        help="markdown file to write the tables into (default: docs/PERFORMANCE.md on CUDA, none on "
                             "the CPU)")
    parser.add_argument("--train-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--infer-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_child:
        args.json_out.write_text(json.dumps(train_once(args.data, args.device, args.small)) + "\n")
        return
    if args.infer_child:
        if args.device == "cpu":
            import torch

            torch.set_num_threads(1)
        args.json_out.write_text(json.dumps(infer_once(args.device, args.small)) + "\n")
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; rehearse with --device cpu --small")
    scratch = Path(tempfile.mkdtemp(prefix="genomix-gpu-"))
    json_out = args.json_out or (REPO / "docs" / "speed_cuda.json" if args.device == "cuda" else scratch / "gpu.json")
    doc = args.doc or (REPO / "docs" / "PERFORMANCE.md" if args.device == "cuda" else None)
    if args.small:
        SHARES.update(tests=120, kernels=120, speed=240, training=240, inference=120)
    started = time.monotonic()
    deadline = started + args.budget
    py, speed = sys.executable, str(REPO / "bench" / "speed.py")
    env = {"PYTHONPATH": str(REPO)}  # this checkout's genomix, whatever is installed
    # The sizes the targets name first (4,096, 65,536, 2^20), so a phase cut short keeps those.
    sizes = ["--log2", "10,12"] if args.small else ["--log2", "12,16,20,14,18"]
    if args.device == "cpu":  # a shared CPU: one thread, or every parallel op waits for a descheduled one
        sizes += ["--threads", "1"]
    phases = {
        "tests": run_phase("tests", [py, "-m", "pytest", "-q", "tests/test_cuda.py"], deadline, env),
        "kernels": run_phase("kernels", [py, speed, "--kernels", "--device", args.device, "--min-log2",
                                         "10" if args.small else "12", *sizes[2:], "--json-out",
                                         str(scratch / "kernels.json")], deadline, env),
        "speed": run_phase("speed", [py, speed, "--device", args.device, "--compile", *sizes, "--repeats", "3",
                                     "--time-limit", "30", "--json-out", str(scratch / "speed.json")], deadline, env),
    }
    phases["training"] = run_phase("training", [py, __file__, "--train-child", "--device", args.device, "--data",
                                                str(args.data), "--json-out", str(scratch / "training.json")]
                                   + (["--small"] if args.small else []), deadline, env)
    phases["inference"] = run_phase("inference", [py, __file__, "--infer-child", "--device", args.device, "--json-out",
                                                  str(scratch / "inference.json")]
                                    + (["--small"] if args.small else []), deadline, env)
    training = (load(scratch / "training.json") or None) if phases["training"]["status"] == 0 else None
    rows = load(scratch / "speed.json")
    order = {"cdil": 0, "chord": 1, None: 2}
    steps = sorted((r for r in rows if "step_s" in r), key=lambda r: (r["n"], order.get(r["protocol"], 2)))
    bandwidth = sorted((r for r in rows if r.get("op") == "factor_product"), key=lambda r: (r["protocol"], r["n"]))
    sys.path.insert(0, str(REPO / "bench"))
    from provenance import code_version

    report = {"device": args.device, "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "CPU",
              "torch": torch.__version__, "commit": code_version(), "small": args.small,
              "total_seconds": time.monotonic() - started, "phases": phases, "steps": steps, "bandwidth": bandwidth,
              "kernels": load(scratch / "kernels.json"), "training": training,
              "inference": load(scratch / "inference.json"),
              "targets": check_targets(steps, bandwidth, training)}
    json_out.write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    if doc:
        write_doc(doc, text)
    print(text)
    print(f"\nJSON: {json_out}" + (f"; tables in {doc}" if doc else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
