"""GPU benchmark: forward+backward tokens/s and peak memory of every Triton kernel, against the
PyTorch step-by-step reference and, when fla is installed, fla's chunk_delta_rule and
fused_recurrent_delta_rule.

    python -m benchmarks.gpu [--lengths 256 1024] [--dims 32 128] [--repeats 10] [--dtype float32]

Run from the repository root (benchmarks/gpu_check.sh runs it after the Triton tests). Runs only where
CUDA exists (elsewhere it says so and exits 0). Prints a Markdown table and writes
results/benchmarks/gpu.json and gpu.md, with rows in the format of benchmarks/cpu.py. Peak memory is
the CUDA allocator's peak during one forward+backward, above what the inputs already held. The
step-by-step reference loops are timed with fewer repeats (--reference-repeats): each is thousands of
small kernel launches.
"""
from __future__ import annotations

import argparse
import inspect
import json
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks.report import rows_table, skipped_row

ROOT = Path(__file__).resolve().parents[1]
B, H = 8, 8
# (op, implementation): "triton" is the op's default Triton kernel (chunkwise WY for the delta rule).
CASES = [
    ("sum_rule", "triton"), ("sum_rule", "reference"),
    ("delta_rule", "triton"), ("delta_rule", "triton-fused-recurrent"), ("delta_rule", "reference"),
    ("delta_rule", "fla-chunk"), ("delta_rule", "fla-fused-recurrent"),
    ("delta_rnn", "triton"), ("delta_rnn", "reference"),
    ("delta_lstm", "triton"), ("delta_lstm", "reference"),
    ("recurrent_delta_net", "triton"), ("recurrent_delta_net", "reference"),
]


def fla_functions():
    """fla's (chunk_delta_rule, fused_recurrent_delta_rule), or None when fla is not installed."""
    try:
        from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
    except ImportError:
        return None
    return chunk_delta_rule, fused_recurrent_delta_rule


def inputs(op: str, L: int, d: int, dtype: torch.dtype, device: str) -> dict:
    """The tests' well-conditioned inputs (positive, sum-normalised keys), as leaves on ``device``."""
    from tests.oracle import make_inputs
    kwargs = make_inputs(op, B, H, L, d, d, dtype=torch.float32, reset_prob=0.0, with_state=False)
    return {name: t.detach().to(device=device, dtype=dtype).requires_grad_() for name, t in kwargs.items()}


def step_function(op: str, implementation: str, L: int, d: int, dtype: torch.dtype, device: str):
    """A closure running one forward+backward pass; its inputs are built before timing."""
    from rfwp import ops
    kwargs = inputs(op, L, d, dtype, device)
    if implementation == "triton-fused-recurrent":
        from rfwp.ops.triton import fused_recurrent_delta_rule

        def run():
            return fused_recurrent_delta_rule(**kwargs)[0]
    elif implementation.startswith("fla-"):
        chunk, fused = fla_functions()
        fn = chunk if implementation == "fla-chunk" else fused
        # fla takes (batch, length, heads, dim); scale 1 matches the delta rule of the papers
        q, k, v = (kwargs[n].detach().transpose(1, 2).contiguous().requires_grad_() for n in "qkv")
        beta = kwargs["beta"].detach().transpose(1, 2).contiguous().requires_grad_()
        extra = {"head_first": False} if "head_first" in inspect.signature(fn).parameters else {}

        def run():
            return fn(q, k, v, beta, scale=1.0, **extra)[0]
    else:
        fn = getattr(ops, op)

        def run():
            return fn(**kwargs, implementation=implementation)[0]

    def step():
        run().float().sum().backward()
    return step


def measure(op: str, implementation: str, L: int, d: int, dtype: torch.dtype, repeats: int) -> dict:
    step = step_function(op, implementation, L, d, dtype, "cuda")
    step()  # compiles the kernels
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - held
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    return dict(kind="op", op=op, implementation=implementation, B=B, H=H, L=L, d=d,
                tokens_per_s=B * L / seconds, peak_mem_MB=peak / 2 ** 20, note="")


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--dims", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--reference-repeats", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds: cases not started by then are listed as skipped (gpu_check.sh sets it)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU benchmark runs only where CUDA exists (see benchmarks/cpu.py)")
        return
    import triton
    dtype = getattr(torch, args.dtype)
    fla = fla_functions() is not None
    machine = dict(platform=platform.platform(), device=torch.cuda.get_device_name(), torch=torch.__version__,
                   triton=triton.__version__, fla=fla, dtype=args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)

    def write(rows: list[dict]) -> str:
        """Both files, after every case, so that a run stopped by a timeout still leaves what it measured."""
        (args.out / "gpu.json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=2) + "\n")
        text = "\n".join(["# GPU benchmark", "", f"B={B}, H={H}, {args.dtype} inputs, forward+backward, "
                          f"{machine['device']}, torch {torch.__version__}, triton {triton.__version__}"
                          f"{'' if fla else ', fla not installed'}; the step-by-step reference loops timed over "
                          f"{args.reference_repeats} repeats, the kernels over {args.repeats}.", "",
                          rows_table(rows)]) + "\n"
        (args.out / "gpu.md").write_text(text)
        return text

    start = time.perf_counter()
    rows = []
    for L in args.lengths:
        for d in args.dims:
            for op, implementation in CASES:
                if implementation.startswith("fla-") and not fla:
                    continue
                if args.budget is not None and time.perf_counter() - start > args.budget:
                    rows.append(skipped_row("op", op, implementation, B, H, L, d,
                                            f"skipped: the run's budget of {args.budget:.0f} s was spent"))
                    continue
                print(f"{op:20s} {implementation:23s} L={L:5d} d={d}", file=sys.stderr, flush=True)
                try:
                    repeats = args.reference_repeats if implementation == "reference" else args.repeats
                    rows.append(measure(op, implementation, L, d, dtype, repeats))
                except Exception as error:  # one failing case (e.g. out of memory) must not end the run
                    print(f"  failed: {type(error).__name__}: {error}", file=sys.stderr)
                    message = str(error).splitlines()[0][:120] if str(error) else ""
                    rows.append(skipped_row("op", op, implementation, B, H, L, d,
                                            f"failed: {type(error).__name__}: {message}"))
                torch.cuda.empty_cache()
                write(rows)
    print(write(rows))

if __name__ == "__main__":
    main()
