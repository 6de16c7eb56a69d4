"""Train-step time and peak memory of Paramixer (CDIL, CHORD) against the Transformer baseline, versus N.

Paramixer's case rests on scaling: O(N log N) mixing where attention is O(N²). This benchmark checks that
claim on the real models, built through the registry at equal width and depth, and also measures the
bandwidth of the sparse factor product (the op Paramixer spends its mixing time in) against a plain copy
of the same tensor, so that "slow" can be told apart from "memory bound".

Each (model, N) point runs in a fresh child process (this script with the hidden `--one`): allocator
caches and the peak-memory high-water mark then start clean, and an out-of-memory kill ends only that point.
The child reports every finished step as a JSON line; the parent kills it when a step runs past
`--time-limit` and stops measuring that model at larger N.

    python bench/speed.py                      # CPU: N = 2^10 … 2^16, rich tables on stdout
    python bench/speed.py --json               # the same rows as one JSON list
    python bench/speed.py --device cuda        # GPU: N = 2^10 … 2^20, bf16 autocast
    python bench/speed.py --compile            # the whole train step compiled (CUDA: as a CUDA graph)
    python bench/speed.py --kernels            # graph breaks and kernels per train step, eager and compiled
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from genomix.console import autocast, resolve_device, reuse_large_allocations
from genomix.models import create_model
from genomix.models.paramixer import KERNELS, ShiftIndex, factor_product, factor_shifts, num_factors

# (registry name, protocol): the three models compared, at the same width and depth.
MODELS: tuple[tuple[str, str | None], ...] = (("paramixer", "cdil"), ("paramixer", "chord"), ("transformer", None))
# Equal width/depth for all; no stem or positions, so the measurement is the mixing and what surrounds it.
CONFIG = dict(dim=64, hidden=128, layers=1, stem_kernel=0, pos_embedding=False, dropout=0.0, composition=False)
STARTUP_S = 60.0  # allowance for a child's imports, model creation and first-step set-up, before any limit

log = Console(stderr=True, highlight=False)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover the work and not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def label(model: str, protocol: str | None) -> str:
    """How a model is named in tables and in --models: paramixer-cdil, paramixer-chord, transformer."""
    return f"{model}-{protocol}" if protocol else model


# --- one measurement (child process) -------------------------------------------------------------------


def current_rss() -> int:
    """Resident set size now, in bytes (/proc/self/statm counts pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Reset the kernel's RSS high-water mark (Linux ≥ 4.0), so that VmHWM covers only what follows."""
    with suppress(OSError), open("/proc/self/clear_refs", "w") as f:  # if not: VmHWM is an upper bound
        f.write("5")


def peak_rss() -> int:
    """Highest resident set size since the last reset, in bytes: VmHWM of /proc/self/status.

    Not getrusage's ru_maxrss: that also keeps the high-water mark of the parent's memory image this
    process was forked from, so a child of a big parent would report the parent's size.
    """
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    return int(kib) * 1024


def build(model: str, protocol: str | None, n: int) -> nn.Module:
    """The model as a user would get it from the registry, sized for sequences of exactly N."""
    config = dict(CONFIG, max_len=n)
    return create_model(label(model, protocol), 2, **config)


def release_free_heap() -> None:
    """Hand freed heap memory back to the OS (glibc `malloc_trim`), so that RSS counts live memory only.

    glibc keeps freed blocks for reuse; without this, a step after the warm-up reuses them and its RSS
    barely moves, and the step's peak would read as almost nothing.
    """
    with suppress(OSError, AttributeError):  # not glibc: RSS then under-counts memory reused from earlier steps
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def loss_of(net: nn.Module, tokens: Tensor, lengths: Tensor, labels: Tensor, device: torch.device
            ) -> Callable[[], Tensor]:
    """The train step's forward: logits under autocast, then the loss."""

    def loss() -> Tensor:
        with autocast(device):
            logits = net(tokens, lengths)
        return nn.functional.cross_entropy(logits.float(), labels)

    return loss


def train_step(net: nn.Module, tokens: Tensor, lengths: Tensor, labels: Tensor, device: torch.device,
               compiled: bool) -> Callable[[], None]:
    """One forward + backward; with `compiled`, forward and loss are one torch.compile graph (on CUDA replayed
    as a CUDA graph, mode="reduce-overhead"), and AOTAutograd derives the backward graph from it."""
    loss = loss_of(net, tokens, lengths, labels, device)
    forward = torch.compile(loss, mode="reduce-overhead" if device.type == "cuda" else None) if compiled else loss

    def step() -> None:
        if compiled and device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be overwritten
        net.zero_grad(set_to_none=True)
        forward().backward()

    return step


def measure_one(model: str, protocol: str | None, n: int, batch: int, device: torch.device, repeats: int,
                compiled: bool = False) -> None:
    """Warm-up step, `repeats` timed steps, then one step for memory; a JSON line per step, then the result.

    Peak memory is what a step adds above the model, its inputs and everything before (compiled kernels
    included, which the warm-up builds): on CUDA the allocator's peak counter, on the CPU the RSS
    high-water mark (VmHWM) minus the RSS just before, with freed heap memory returned to the OS first. It is
    taken on a separate, untimed step so that trimming the heap never slows a timed one.
    """
    torch.manual_seed(0)
    net = build(model, protocol, n).to(device).train()
    tokens = torch.randint(1, 6, (batch, n), device=device)  # A, C, G, T, N
    lengths = torch.full((batch,), n, device=device)
    labels = torch.randint(0, 2, (batch,), device=device)
    step = train_step(net, tokens, lengths, labels, device, compiled)
    times = []
    for i in range(1 + repeats + compiled):  # compiled: one more untimed step (CUDA graphs record on the second)
        start = time.perf_counter()
        step()
        sync(device)
        elapsed = time.perf_counter() - start
        print(json.dumps({"step": i, "s": elapsed}), flush=True)
        if i > compiled:
            times.append(elapsed)

    net.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        release_free_heap()
        reset_peak_rss()
        baseline = current_rss()
    step()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss()
    print(json.dumps({"step_s": statistics.median(times), "peak_mem_bytes": max(peak - baseline, 0)}), flush=True)


# --- running the children (parent process) -------------------------------------------------------------


def run_child(argv: list[str], time_limit: float) -> tuple[dict | None, str | None]:
    """Run one measurement; (result, None), or (None, why) on a step over the limit, OOM or crash."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a chatty child can never block on it
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
        deadline = time.monotonic() + STARTUP_S + time_limit
        try:
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
                if not ready:
                    return None, f"step over {time_limit:g} s"
                line = proc.stdout.readline()
                if not line:  # the child ended without a result
                    proc.wait()
                    stderr.seek(0)
                    err = stderr.read()
                    if proc.returncode in (-9, 137) or "memory" in err.lower():
                        return None, "out of memory"
                    return None, f"failed ({(err.strip().splitlines() or [f'exit {proc.returncode}'])[-1]})"
                row = json.loads(line)
                if "step_s" in row:
                    return row, None
                deadline = time.monotonic() + time_limit  # a step finished: the next one gets the full limit
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def train_step_rows(args: argparse.Namespace, device: torch.device, sizes: list[int],
                    bandwidth: list[dict]) -> list[dict]:
    """Measure every (model, N) in the order of `sizes`; a model whose step runs past the limit skips larger N."""
    rows: list[dict] = []
    stopped: dict[str, int] = {}  # model -> the N its step ran past the limit at
    for n in sizes:
        for model, protocol in MODELS:
            name = label(model, protocol)
            if name not in args.models:
                continue
            row = {"model": model, "protocol": protocol, "n": n, "batch": args.batch, "dim": CONFIG["dim"],
                   "step_s": None, "peak_mem_bytes": None}
            if n > stopped.get(name, n):
                row["note"] = "skipped"
            else:
                argv = [sys.executable, __file__, "--one", f"{model}:{protocol or ''}:{n}", "--batch",
                        str(args.batch), "--device", device.type, "--repeats", str(args.repeats),
                        "--threads", str(torch.get_num_threads())] + (["--compile"] if args.compile else [])
                result, why = run_child(argv, args.time_limit)
                if result:
                    row.update(result)
                else:
                    row["note"] = why
                    if why and why.startswith("step over"):
                        stopped[name] = min(n, stopped.get(name, n))
            log.log(f"{name:18} N={n:>8,}  " + (f"{row['step_s']:.4f} s  {row['peak_mem_bytes'] / 2**20:.1f} MiB"
                                                 if row["step_s"] is not None else row["note"]))
            rows.append(row)
            if args.json_out:  # after every point, so a run stopped from outside keeps what it measured
                args.json_out.write_text(json.dumps(json_rows(rows, bandwidth), indent=1) + "\n")
    return rows


# --- factor-product bandwidth (parent process) ---------------------------------------------------------


def time_op(fn: Callable[[], object], device: torch.device, min_s: float = 0.05, blocks: int = 5) -> float:
    """Median seconds per call over `blocks` timed blocks, each long enough (≥ min_s) to dwarf timer noise."""
    fn()
    sync(device)
    calls, elapsed = 1, 0.0
    while True:  # find how many calls fill min_s
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            break
        calls *= 2
    per_call = [elapsed / calls]
    for _ in range(blocks - 1):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        per_call.append((time.perf_counter() - start) / calls)
    return statistics.median(per_call)


def time_alternating(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation so that load changes hit all alike."""
    per_call: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            per_call[name].append(time_op(fn, device, blocks=1))
    return {name: statistics.median(t) for name, t in per_call.items()}


@torch.no_grad()
def bandwidth_rows(args: argparse.Namespace, device: torch.device, sizes: list[int]) -> list[dict]:
    """Effective GB/s of one factor's forward (middle factor) versus a copy of the same V, same run.

    The ideal pass reads W (K values per row) and V once and writes the output once: (K + 2·D)·B·N
    elements. Two ops: the factor product W V, and the step a block runs, V + W D V (factor_norm and the
    residual add, fused in the kernel). The dtype is the one the model runs the op in: fp32 on the CPU, bf16
    under CUDA autocast. The kernels are the ones training uses.
    """
    KERNELS.FUSE_MIN_LEN = 0  # as in training: the fused kernels at every N
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dim, rows = CONFIG["dim"], []
    for protocol in ("cdil", "chord"):
        if f"paramixer-{protocol}" not in args.models:
            continue
        for n in sizes:
            factors = factor_shifts(protocol, num_factors(n))
            shifts = factors[len(factors) // 2]
            w = torch.randn(args.batch, n, len(shifts), device=device, dtype=dtype)
            v = torch.randn(args.batch, n, dim, device=device, dtype=dtype)
            index = ShiftIndex(torch.full((args.batch,), n, device=device), n)
            ideal_bytes = (len(shifts) + 2 * dim) * args.batch * n * v.element_size()
            times = time_alternating({
                "product": lambda: factor_product(w, v, shifts, index),  # noqa: B023 - used at once
                "step": lambda: factor_product(w, v, shifts, index, normalize=True, residual=True),  # noqa: B023
                "copy": v.clone}, device)
            row = {"op": "factor_product", "protocol": protocol, "n": n, "k": len(shifts),
                   "gbps": ideal_bytes / times["product"] / 1e9, "step_gbps": ideal_bytes / times["step"] / 1e9,
                   "copy_gbps": 2 * v.numel() * v.element_size() / times["copy"] / 1e9}
            log.log(f"factor {protocol:5} N={n:>8,}  product {row['gbps']:.1f} GB/s, step {row['step_gbps']:.1f} GB/s"
                    f" (copy {row['copy_gbps']:.1f})")
            rows.append(row)
    return rows


# --- graph breaks and kernels per step --------------------------------------------------------------------

# ATen ops that only allocate or describe memory: no kernel runs for them.
NOT_KERNELS = {"empty", "empty_like", "empty_strided", "new_empty", "as_strided", "view", "reshape", "_reshape_alias",
               "unsqueeze", "squeeze", "t", "transpose", "permute", "expand", "select", "slice", "split",
               "split_with_sizes", "narrow", "detach", "detach_", "alias", "resolve_conj", "resolve_neg",
               "lift_fresh", "to", "_unsafe_view", "result_type", "promote_types", "contiguous", "resize_",
               "unfold", "chunk", "unbind", "_to_copy", "zeros", "ones", "new_ones", "full", "scalar_tensor",
               "_local_scalar_dense", "item", "is_nonzero", "clone"}


def count_kernels(step: Callable[[], None], device: torch.device) -> int:
    """Kernels one call of step launches: on CUDA the launch calls; on the CPU every ATen op that computes and
    has no computing ATen op inside, every custom op (one C kernel each) and every compiled C++ kernel."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        step()
        sync(device)
    events = prof.events()
    if device.type == "cuda":
        return sum(e.name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch", "cuLaunchKernelEx")
                   for e in events)

    def computes(e) -> bool:
        if e.name.startswith("genomix::") or "cpp_fused" in e.name:
            return True
        return e.name.startswith("aten::") and e.name[6:] not in NOT_KERNELS

    return sum(computes(e) and (e.name.startswith("genomix::") or not any(computes(c) for c in e.cpu_children))
               for e in events)


def kernel_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Graph breaks of the compiled train step and kernels per step, eager and compiled, per Paramixer model."""
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True  # compiled C++ kernels then show in the profiler
    n, rows = 2**args.min_log2, []
    for model, protocol in MODELS:
        if protocol is None or label(model, protocol) not in args.models:
            continue
        torch.manual_seed(0)
        net = build(model, protocol, n).to(device).train()
        tokens = torch.randint(1, 6, (args.batch, n), device=device)
        lengths = torch.full((args.batch,), n, device=device)
        labels = torch.randint(0, 2, (args.batch,), device=device)
        explained = torch._dynamo.explain(loss_of(net, tokens, lengths, labels, device))()
        row = {"op": "kernels_per_step", "model": model, "protocol": protocol, "n": n, "batch": args.batch,
               "graph_breaks": explained.graph_break_count, "graphs": explained.graph_count}
        for compiled in (False, True):
            torch._dynamo.reset()
            step = train_step(net, tokens, lengths, labels, device, compiled)
            for _ in range(3):  # compile, record, warm
                step()
            row["compiled_kernels" if compiled else "eager_kernels"] = count_kernels(step, device)
        log.log(f"{label(model, protocol):18} N={n:,}: {row['graph_breaks']} graph breaks, kernels per step "
                f"{row['eager_kernels']} eager, {row['compiled_kernels']} compiled")
        rows.append(row)
    return rows


# --- output --------------------------------------------------------------------------------------------


def fmt(x: float | None, spec: str) -> str:
    """A number for a table cell; a dash where there is none (a point not measured)."""
    return "—" if x is None else format(x, spec)


def print_tables(steps: list[dict], bandwidth: list[dict], device: torch.device, args: argparse.Namespace) -> None:
    """Step time and memory with ratios to the transformer at the same N; then the bandwidth table."""
    out = Console(width=max(Console().width, 120))  # wide enough for every column, even in a pipe
    baseline = {r["n"]: r for r in steps if r["model"] == "transformer"}
    table = Table(title=f"Train step (forward + backward), batch {args.batch}, D={CONFIG['dim']}, "
                        f"H={CONFIG['hidden']}, 1 block, {device.type}")
    for col in ("model", "N", "step s", "µs / position", "peak MiB", "time ÷ transformer", "memory ÷ transformer"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in steps:
        t = baseline.get(r["n"], {})
        time_ratio = r["step_s"] / t["step_s"] if r["step_s"] and t.get("step_s") else None
        mem_ratio = (r["peak_mem_bytes"] / t["peak_mem_bytes"]
                     if r["peak_mem_bytes"] is not None and t.get("peak_mem_bytes") else None)
        per_position = r["step_s"] / (r["n"] * r["batch"]) * 1e6 if r["step_s"] is not None else None
        table.add_row(label(r["model"], r["protocol"]), f"{r['n']:,}",
                      fmt(r["step_s"], ".4f") if r["step_s"] is not None else r.get("note", "—"),
                      fmt(per_position, ".3f"),
                      fmt(None if r["peak_mem_bytes"] is None else r["peak_mem_bytes"] / 2**20, ".1f"),
                      fmt(time_ratio, ".3f"), fmt(mem_ratio, ".3f"))
    out.print(table)
    if bandwidth:
        table = Table(title="Factor forward (middle factor) vs. a copy of V, same run: W V, and V + W D V")
        for col in ("protocol", "N", "K", "product GB/s", "step GB/s", "copy GB/s", "product % of copy",
                    "step % of copy"):
            table.add_column(col, justify="left" if col == "protocol" else "right")
        for r in bandwidth:
            table.add_row(r["protocol"], f"{r['n']:,}", str(r["k"]), f"{r['gbps']:.2f}", f"{r['step_gbps']:.2f}",
                          f"{r['copy_gbps']:.2f}", f"{100 * r['gbps'] / r['copy_gbps']:.0f}%",
                          f"{100 * r['step_gbps'] / r['copy_gbps']:.0f}%")
        out.print(table)


def json_rows(steps: list[dict], bandwidth: list[dict]) -> list[dict]:
    """The documented JSON fields only (the table's notes and K are for people)."""
    step_keys = ("model", "protocol", "n", "batch", "dim", "step_s", "peak_mem_bytes")
    band_keys = ("op", "protocol", "n", "k", "gbps", "step_gbps", "copy_gbps")
    return [{k: r[k] for k in step_keys} for r in steps] + [{k: r[k] for k in band_keys} for r in bandwidth]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [label(m, p) for m, p in MODELS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to run (default: auto, CUDA when present); CUDA runs under bf16 autocast")
    parser.add_argument("--min-log2", type=int, default=10, help="smallest N as a power of two (default: 10)")
    parser.add_argument("--max-log2", type=int, default=None,
                        help="largest N as a power of two (default: 16 on CPU, 20 on CUDA)")
    parser.add_argument("--step-log2", type=int, default=1, help="N grows by this power of two (default: 1)")
    parser.add_argument("--log2", type=lambda text: [int(k) for k in text.split(",")],
                        help="N as powers of two, measured in this order (e.g. 16,20,12: the headline sizes "
                             "first when time is short); overrides --min-log2/--max-log2/--step-log2")
    parser.add_argument("--batch", type=int, default=1, help="sequences per train step (default: 1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed steps after one warm-up step; the median is reported (default: 3)")
    parser.add_argument("--time-limit", type=float, default=120.0,
                        help="seconds one train step may take; a model over it, out of memory or crashed is "
                             "recorded with nulls, and one over it is not run at larger N (default: 120)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice, one per core); on a machine shared "
                             "with other busy processes, 1 avoids each parallel op waiting for a descheduled thread")
    parser.add_argument("--models", default=",".join(names),
                        help=f"comma-separated subset of {', '.join(names)} (default: all)")
    parser.add_argument("--no-bandwidth", action="store_true", help="skip the factor-product bandwidth rows")
    parser.add_argument("--compile", action="store_true",
                        help="compile the whole train step (on CUDA replayed as a CUDA graph)")
    parser.add_argument("--kernels", action="store_true",
                        help="only count graph breaks and kernels per train step (eager and compiled) at "
                             "N = 2^--min-log2, for the Paramixer models")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the tables")
    parser.add_argument("--json-out", type=Path, help="also write the JSON list to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: MODEL:PROTOCOL:N
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.step_log2 < 1:
        parser.error("--repeats and --step-log2 must be at least 1")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(args.models) - set(names)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(names)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reuse_large_allocations()  # as the genomix CLI does, so the figures are what a user gets
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        model, protocol, n = args.one.split(":")
        measure_one(model, protocol or None, int(n), args.batch, device, args.repeats, args.compile)
        return
    if args.kernels:
        rows = kernel_rows(args, device)
        if args.json_out:
            args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
        print(json.dumps(rows, indent=1))
        return
    max_log2 = args.max_log2 if args.max_log2 is not None else (20 if device.type == "cuda" else 16)
    sizes = ([2**k for k in args.log2] if args.log2 else
             [2**k for k in range(args.min_log2, max_log2 + 1, args.step_log2)])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    log.log(f"torch {torch.__version__} on {where}; N = {sizes[0]:,} … {sizes[-1]:,}, batch {args.batch}")
    bandwidth = [] if args.no_bandwidth else bandwidth_rows(args, device, sizes)
    steps = train_step_rows(args, device, sizes, bandwidth)
    rows = json_rows(steps, bandwidth)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_tables(steps, bandwidth, device, args)


if __name__ == "__main__":
    main()
