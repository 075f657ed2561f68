"""The row format shared by cpu.py and gpu.py, written as a Markdown table by ``rfwp.results.markdown_table``.

A row: {kind ("op", "layer" or "sdpa"), op, implementation, B, H, L, d, tokens_per_s, peak_mem_MB, note}; a case
that was not timed has tokens_per_s and peak_mem_MB None and says why in its note.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from rfwp.results import markdown_table

__all__ = ["case_parser", "machine", "markdown_table", "rows_table", "run_case", "skipped_row", "write_result"]
ROOT = Path(__file__).resolve().parents[1]


def run_case(module: str, options: list[str], case: list[str], timeout: float) -> dict | None:
    """``python -m <module> <options> --case <case>`` in a fresh process (so that its peak memory is its own): the
    JSON row it prints last, or None (said on stderr) if it timed out or failed."""
    cmd = [sys.executable, "-m", module, *options, "--case", *case]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        print(f"  timed out: {' '.join(case)}", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"  failed: {' '.join(case)}\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def case_parser(module: str, doc: str, *, repeats: int, threads: int, quick: str,
                case: tuple[str, ...]) -> argparse.ArgumentParser:
    """The options of a benchmark that times its cases in fresh processes (``run_case``): --repeats, --threads,
    --timeout, --quick (``quick``: what it runs), --out, and the hidden --case (its fields, named by ``case``)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats of a case (after a warm-up)")
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--timeout", type=float, default=300, help="seconds for one case")
    parser.add_argument("--quick", action="store_true", help=f"{quick}: checks the code path only")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument("--case", nargs=len(case), metavar=case, help=argparse.SUPPRESS)
    return parser


def machine(threads: int) -> dict:
    """What a result was measured on."""
    return dict(platform=platform.platform(), processor=platform.processor(), threads=threads,
                torch=torch.__version__)


def write_result(out: Path, name: str, result: dict, text: str) -> None:
    """``out/<name>.json`` (the result) and ``out/<name>.md`` (its report ``text``), and the report on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)


def skipped_row(kind: str, op: str, implementation: str, B: int, H: int, L: int, d: int, note: str) -> dict:
    return dict(kind=kind, op=op, implementation=implementation, B=B, H=H, L=L, d=d,
                tokens_per_s=None, peak_mem_MB=None, note=note)


def rows_table(rows: list[dict]) -> str:
    """The rows as one Markdown table: tokens/s with thousands separators, memory to 0.1 MB, and a note column
    for the cases not timed."""
    def number(value, form):
        return "" if value is None else format(value, form)
    table = pd.DataFrame([{
        "kind": r["kind"], "op": r["op"], "implementation": r["implementation"], "L": r["L"], "d": r["d"],
        "tokens/s (fwd+bwd)": number(r["tokens_per_s"], ",.0f"), "peak memory (MB)": number(r["peak_mem_MB"], ".1f"),
        "note": r.get("note") or ""} for r in rows],
        columns=["kind", "op", "implementation", "L", "d", "tokens/s (fwd+bwd)", "peak memory (MB)", "note"])
    return markdown_table(table)
