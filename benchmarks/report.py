"""The row format and Markdown table shared by cpu.py and gpu.py.

A row: {kind ("op", "layer" or "sdpa"), op, implementation, B, H, L, d, tokens_per_s, peak_mem_MB}.
"""
from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    lines = ["| kind | op | implementation | L | d | tokens/s (fwd+bwd) | peak memory (MB) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['op']} | {r['implementation']} | {r['L']} | {r['d']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['peak_mem_MB']:.1f} |")
    return "\n".join(lines)
