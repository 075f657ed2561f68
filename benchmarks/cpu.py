"""CPU benchmark: forward+backward tokens/s and peak training memory of every op and layer,
for each implementation, against causal scaled_dot_product_attention, in one run.

    python -m benchmarks.cpu [--lengths 256 1024] [--repeats 3] [--out results/benchmarks]   # make benchmark
    python -m benchmarks.cpu --quick --out /tmp/bench    # seconds: every code path on tiny sizes (for the tests)

Run from the repository root. Prints a Markdown table and writes results/benchmarks/cpu.json and cpu.md.
Each case runs in a fresh subprocess so that its peak resident memory (above the inputs) is its own.
About 8 minutes on 2 idle cores (estimated from the per-case times of the last full run, which took about
14): the step-by-step reference loops that take minutes per case (SLOW_REFERENCE) are not timed, and their rows
say so. As a guard, cases not started within --budget (14 minutes) are listed as skipped too.
"""
from __future__ import annotations

import json
import platform
import resource
import sys
import time

import pandas as pd
import torch

from benchmarks.report import (case_parser, machine, markdown_table, rows_table, run_case, skipped_row,
                               write_result)

B, H, D = 8, 8, 32
OPS = {
    "sum_rule": ("reference", "chunked"),
    "delta_rule": ("reference", "chunked", "compiled"),
    "delta_rnn": ("reference", "compiled"),
    "delta_lstm": ("reference", "compiled"),
    "recurrent_delta_net": ("reference", "compiled"),
}
LAYERS = ("linear_transformer", "delta_net", "delta_rnn", "delta_lstm", "recurrent_delta_net", "transformer")

# op -> the length from which its step-by-step reference loop is not timed. The Delta LSTM loop takes about 17 s
# per forward+backward at L = 1024, d = 32 and 70 s at d = 64: with the warm-up and 3 repeats, 1 and 5 minutes,
# a third of the whole benchmark. (Every other reference loop takes under 45 s per case.)
SLOW_REFERENCE = {"delta_lstm": 1024}
SKIPPED = "skipped: reference loop takes minutes"

# Tiny sizes for --quick: every kind of case, one op skipped as SLOW_REFERENCE would skip it.
QUICK = dict(B=2, H=2, d=4, lengths=[16], repeats=1,
             ops={"delta_rule": ("reference", "compiled"), "delta_lstm": ("reference",)}, layers=("delta_net",))

# The targets, as (numerator case, denominator case, length, minimum ratio).
TARGETS = [
    (("delta_rule", "chunked"), ("delta_rule", "reference"), 256, 6.0),
    (("delta_rule", "chunked"), ("delta_rule", "reference"), 1024, 12.0),
    (("delta_rnn", "compiled"), ("delta_rnn", "reference"), 256, 5.0),
    (("recurrent_delta_net", "compiled"), ("recurrent_delta_net", "reference"), 256, 5.0),
    (("delta_lstm", "compiled"), ("delta_lstm", "reference"), 256, 5.0),
    (("layer:delta_net", "auto"), ("layer:transformer", "auto"), 256, 0.8),
]


def op_case(op: str, implementation: str, b: int, h: int, L: int, d: int):
    """A closure running one forward+backward of ``op``, and its inputs (built before timing)."""
    from rfwp import ops
    from tests.oracle import make_inputs  # the same well-conditioned inputs the tests use
    kwargs = make_inputs(op, b, h, L, d, d, dtype=torch.float32, reset_prob=0.0, with_state=False)
    fn = getattr(ops, op)

    def step():
        out, _ = fn(**kwargs, implementation=implementation)
        out.sum().backward()
    return step


def sdpa_case(b: int, h: int, L: int, d: int):
    q, k, v = (torch.randn(b, h, L, d, requires_grad=True) for _ in range(3))

    def step():
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    return step


def layer_case(name: str, b: int, h: int, L: int, d: int):
    """One pre-LN block (layer + feed-forward) of the named model at d_model = H·d, d_ff = 4·d_model."""
    from rfwp.layers import Block
    from rfwp.models import ModelConfig, make_layer
    config = ModelConfig(d_model=h * d, n_heads=h, d_ff=4 * h * d, dropout=0.0)
    block = Block(make_layer(name, config), config.d_model, config.d_ff)
    x = torch.randn(b, L, h * d, requires_grad=True)

    def step():
        y, _ = block(x)
        y.sum().backward()
    return step


def measure(kind: str, name: str, implementation: str, b: int, h: int, L: int, d: int, repeats: int) -> dict:
    """Run in this (fresh) process: warm up once, then time ``repeats`` forward+backward passes."""
    torch.manual_seed(0)
    if kind == "op":
        step = op_case(name, implementation, b, h, L, d)
    elif kind == "layer":
        step = layer_case(name, b, h, L, d)
    else:
        step = sdpa_case(b, h, L, d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    seconds = (time.perf_counter() - start) / repeats
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return dict(kind=kind, op=name, implementation=implementation, B=b, H=h, L=L, d=d,
                tokens_per_s=b * L / seconds, peak_mem_MB=peak_kb / 1024, note="")


def ratios(rows: list[dict], d: int) -> list[dict]:
    speed = {((r["op"] if r["kind"] != "layer" else f"layer:{r['op']}"), r["implementation"], r["L"], r["d"]):
             r["tokens_per_s"] for r in rows}
    out = []
    for (num, den, L, target) in TARGETS:
        a, b = speed.get((*num, L, d)), speed.get((*den, L, d))
        ratio = a / b if a and b else None
        out.append(dict(case=f"{num[0]} {num[1]} / {den[0]} {den[1]}", L=L, target=target, ratio=ratio,
                        met=None if ratio is None else ratio >= target))
    return out


def memory_scaling(rows: list[dict], d: int) -> list[dict]:
    """Peak memory per (B·H·L·d) element at d and 2d: constant for O(L·d) memory, doubling for O(L·d²)."""
    out = []
    by = {(r["kind"], r["op"], r["implementation"], r["L"], r["d"]): r["peak_mem_MB"] for r in rows
          if r["peak_mem_MB"] is not None}
    for (kind, op, impl, L, d_row), mb in by.items():
        wide = by.get((kind, op, impl, L, 2 * d_row))
        if wide is not None and d_row == d:
            out.append(dict(op=op, implementation=impl, L=L, MB_d=mb, MB_2d=wide,
                            growth_d_to_2d=wide / mb if mb > 0 else None))
    return out


def report(result: dict, b: int, h: int) -> str:
    machine = result["machine"]
    targets = pd.DataFrame([{"case": t["case"], "L": t["L"], "target": f"≥ {t['target']}×",
                             "measured": "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}×",
                             "met": "n/a" if t["met"] is None else t["met"]}
                            for t in result["targets"]], columns=["case", "L", "target", "measured", "met"])
    memory = pd.DataFrame([{"op": m["op"], "implementation": m["implementation"], "L": m["L"],
                            "MB at d": f"{m['MB_d']:.1f}", "MB at 2d": f"{m['MB_2d']:.1f}",
                            "growth": "n/a" if m["growth_d_to_2d"] is None else f"{m['growth_d_to_2d']:.2f}"}
                           for m in result["memory"]],
                          columns=["op", "implementation", "L", "MB at d", "MB at 2d", "growth"])
    skipped = ", ".join(f"{op} from L = {L}" for op, L in result["slow_reference"].items())
    lines = ["# CPU benchmark", "",
             f"B={b}, H={h}, fp32, forward+backward, {machine['threads']} threads, torch {machine['torch']}, "
             f"{machine['processor'] or platform.machine()}. Not timed, because one case of its step-by-step "
             f"reference loop takes minutes: {skipped or 'none'}.", "",
             rows_table(result["rows"]), "",
             "## Targets (ratios of tokens/s measured in this run)", "", markdown_table(targets), "",
             "## Memory scaling with the head dimension (O(L·d) memory: growth ≈ 2 from d to 2d)", "",
             markdown_table(memory)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None):
    parser = case_parser("benchmarks.cpu", __doc__, repeats=3, threads=2, quick="tiny sizes, a few cases",
                         case=("KIND", "NAME", "IMPL", "B", "H", "L", "D", "REPEATS"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--budget", type=float, default=840,
                        help="seconds: cases not started by then are listed as skipped (keeps a run under 15 minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.case:
        kind, name, impl, *sizes = args.case
        b, h, L, d, repeats = map(int, sizes)
        print(json.dumps(measure(kind, name, impl, b, h, L, d, repeats)))
        return

    b, h, d, lengths, repeats, ops, layers = B, H, D, args.lengths, args.repeats, OPS, LAYERS
    slow_reference = SLOW_REFERENCE
    if args.quick:
        b, h, d, lengths, repeats, ops, layers = (QUICK[k] for k in ("B", "H", "d", "lengths", "repeats", "ops",
                                                                      "layers"))
        slow_reference = {"delta_lstm": max(lengths)}
    cases = [("sdpa", "sdpa", "torch")]
    cases += [("op", op, impl) for op, impls in ops.items() for impl in impls]
    cases += [("layer", name, "auto") for name in layers]
    rows = []
    start = time.perf_counter()
    for L in lengths:
        for d_case in (d, 2 * d) if L == max(lengths) else (d,):
            for kind, name, impl in cases:
                if kind == "op" and impl == "reference" and L >= slow_reference.get(name, float("inf")):
                    rows.append(skipped_row(kind, name, impl, b, h, L, d_case, SKIPPED))
                    continue
                if time.perf_counter() - start > args.budget:
                    rows.append(skipped_row(kind, name, impl, b, h, L, d_case,
                                            f"skipped: the run's budget of {args.budget:.0f} s was spent"))
                    continue
                print(f"{kind:5s} {name:20s} {impl:9s} L={L:5d} d={d_case}", file=sys.stderr, flush=True)
                row = run_case("benchmarks.cpu", ["--threads", str(args.threads)],
                               [kind, name, impl, str(b), str(h), str(L), str(d_case), str(repeats)], args.timeout)
                if row:
                    rows.append(row)
    result = dict(machine=machine(args.threads), slow_reference=slow_reference, rows=rows,
                  targets=ratios(rows, d), memory=memory_scaling(rows, d))
    write_result(args.out, "cpu", result, report(result, b, h))
    print(f"{len(rows)} cases in {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
