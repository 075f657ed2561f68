"""CPU benchmark: forward+backward tokens/s and peak training memory of every op and layer,
for each implementation, against causal scaled_dot_product_attention, in one run.

    python benchmarks/cpu.py [--lengths 256 1024] [--repeats 3] [--out results/benchmarks]

Prints a Markdown table and writes results/benchmarks/cpu.json and cpu.md. Each case runs in a
fresh subprocess so that its peak resident memory (above the inputs) is its own.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from report import markdown_table  # benchmarks/ is on sys.path when a script here runs

B, H, D = 8, 8, 32
OPS = {
    "sum_rule": ("reference", "chunked"),
    "delta_rule": ("reference", "chunked", "compiled"),
    "delta_rnn": ("reference", "compiled"),
    "delta_lstm": ("reference", "compiled"),
    "recurrent_delta_net": ("reference", "compiled"),
}
LAYERS = ("linear_transformer", "delta_net", "delta_rnn", "delta_lstm", "recurrent_delta_net", "transformer")

# The targets, as (numerator case, denominator case, length, minimum ratio).
TARGETS = [
    (("delta_rule", "chunked"), ("delta_rule", "reference"), 256, 6.0),
    (("delta_rule", "chunked"), ("delta_rule", "reference"), 1024, 12.0),
    (("delta_rnn", "compiled"), ("delta_rnn", "reference"), 256, 5.0),
    (("recurrent_delta_net", "compiled"), ("recurrent_delta_net", "reference"), 256, 5.0),
    (("delta_lstm", "compiled"), ("delta_lstm", "reference"), 256, 5.0),
    (("layer:delta_net", "auto"), ("layer:transformer", "auto"), 256, 0.8),
]


def op_case(op: str, implementation: str, L: int, d: int):
    """A closure running one forward+backward of ``op``, and its inputs (built before timing)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from oracle import make_inputs  # the same well-conditioned inputs the tests use

    from rfwp import ops
    kwargs = make_inputs(op, B, H, L, d, d, dtype=torch.float32, reset_prob=0.0, with_state=False)
    fn = getattr(ops, op)

    def step():
        out, _ = fn(**kwargs, implementation=implementation)
        out.sum().backward()
    return step


def sdpa_case(L: int, d: int):
    q, k, v = (torch.randn(B, H, L, d, requires_grad=True) for _ in range(3))

    def step():
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    return step


def layer_case(name: str, L: int, d: int):
    """One pre-LN block (layer + feed-forward) of the named model at d_model = H·d, d_ff = 4·d_model."""
    from rfwp.layers import Block
    from rfwp.models import ModelConfig, make_layer
    config = ModelConfig(d_model=H * d, n_heads=H, d_ff=4 * H * d, dropout=0.0)
    block = Block(make_layer(name, config), config.d_model, config.d_ff)
    x = torch.randn(B, L, H * d, requires_grad=True)

    def step():
        y, _ = block(x)
        y.sum().backward()
    return step


def measure(kind: str, name: str, implementation: str, L: int, d: int, repeats: int) -> dict:
    """Run in this (fresh) process: warm up once, then time ``repeats`` forward+backward passes."""
    torch.manual_seed(0)
    if kind == "op":
        step = op_case(name, implementation, L, d)
    elif kind == "layer":
        step = layer_case(name, L, d)
    else:
        step = sdpa_case(L, d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    seconds = (time.perf_counter() - start) / repeats
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return dict(kind=kind, op=name, implementation=implementation, B=B, H=H, L=L, d=d,
                tokens_per_s=B * L / seconds, peak_mem_MB=peak_kb / 1024)


def run_case(args: list[str], timeout: float) -> dict | None:
    cmd = [sys.executable, __file__, "--case", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  timed out: {' '.join(args)}", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"  failed: {' '.join(args)}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> list[dict]:
    speed = {((r["op"] if r["kind"] != "layer" else f"layer:{r['op']}"), r["implementation"], r["L"], r["d"]):
             r["tokens_per_s"] for r in rows}
    out = []
    for (num, den, L, target) in TARGETS:
        a, b = speed.get((*num, L, D)), speed.get((*den, L, D))
        ratio = a / b if a and b else None
        out.append(dict(case=f"{num[0]} {num[1]} / {den[0]} {den[1]}", L=L, target=target, ratio=ratio,
                        met=None if ratio is None else ratio >= target))
    return out


def memory_scaling(rows: list[dict]) -> list[dict]:
    """Peak memory per (B·H·L·d) element at d and 2d: constant for O(L·d) memory, doubling for O(L·d²)."""
    out = []
    by = {(r["kind"], r["op"], r["implementation"], r["L"], r["d"]): r["peak_mem_MB"] for r in rows}
    for (kind, op, impl, L, d), mb in by.items():
        wide = by.get((kind, op, impl, L, 2 * d))
        if wide is not None and d == D:
            out.append(dict(op=op, implementation=impl, L=L, MB_d=mb, MB_2d=wide,
                            growth_d_to_2d=wide / mb if mb > 0 else None))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "benchmarks")
    parser.add_argument("--case", nargs=6, metavar=("KIND", "NAME", "IMPL", "L", "D", "REPEATS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        kind, name, impl, L, d, repeats = args.case
        print(json.dumps(measure(kind, name, impl, int(L), int(d), int(repeats))))
        return

    cases = [("sdpa", "sdpa", "torch")]
    cases += [("op", op, impl) for op, impls in OPS.items() for impl in impls]
    cases += [("layer", name, "auto") for name in LAYERS]
    rows = []
    for L in args.lengths:
        for d in (D, 2 * D) if L == max(args.lengths) else (D,):
            for kind, name, impl in cases:
                print(f"{kind:5s} {name:20s} {impl:9s} L={L:5d} d={d}", file=sys.stderr, flush=True)
                row = run_case([kind, name, impl, str(L), str(d), str(args.repeats)], args.timeout)
                if row:
                    rows.append(row)
    result = dict(machine=dict(platform=platform.platform(), processor=platform.processor(),
                               threads=args.threads, torch=torch.__version__),
                  rows=rows, targets=ratios(rows), memory=memory_scaling(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu.json").write_text(json.dumps(result, indent=2))
    lines = ["# CPU benchmark", "", f"B={B}, H={H}, fp32, forward+backward, {args.threads} threads, "
             f"torch {torch.__version__}, {platform.processor() or platform.machine()}.", "",
             markdown_table(rows), "",
             "## Targets (ratios of tokens/s measured in this run)", "",
             "| case | L | target | measured | met |", "|---|---:|---:|---:|---|"]
    for t in result["targets"]:
        measured = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}×"
        lines.append(f"| {t['case']} | {t['L']} | ≥ {t['target']}× | {measured} | {t['met']} |")
    lines += ["", "## Memory scaling with the head dimension (O(L·d) memory: growth ≈ 2 from d to 2d)", "",
              "| op | implementation | L | MB at d | MB at 2d | growth |", "|---|---|---:|---:|---:|---:|"]
    for m in result["memory"]:
        growth = "n/a" if m["growth_d_to_2d"] is None else f"{m['growth_d_to_2d']:.2f}"
        lines.append(f"| {m['op']} | {m['implementation']} | {m['L']} | {m['MB_d']:.1f} | {m['MB_2d']:.1f} | {growth} |")
    text = "\n".join(lines) + "\n"
    (args.out / "cpu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
