"""Run every notebook with papermill at one scale, N at a time, and regenerate the results index.

    python -m rfwp.reproduce --scale cpu --jobs 2            # what `make reproduce` runs
    python -m rfwp.reproduce --scale smoke --only 01_background

Each notebook gets the parameters scale, seeds (None: the scale's default, ``rfwp.train.DEFAULT_SEEDS``) and
output_dir (``<results>/<notebook>``); its executed copy goes to ``<results>/notebooks/<notebook>.ipynb``, where
``<results>`` is ``results/`` at cpu and paper scale and ``results/smoke/`` (git-ignored) at smoke scale.
A failing notebook fails the batch (exit status 1, with its name and error) after the others have finished.

Executed notebooks are committed, so each is cleaned after its run (``clean_notebook``): no papermill or
nbclient timings, and the checkout's absolute path replaced by repo-relative paths (the home folder by ``~``),
so that regenerating results from the committed run records leaves ``git status`` clean.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

from rfwp.results import write_index
from rfwp.train.runs import REPO_ROOT, SCALES, default_results_dir

KERNEL = "rfwp"


@dataclass
class Outcome:
    notebook: str
    seconds: float
    error: str | None   # None if the notebook ran to the end


def _error_summary(stderr: str) -> str:
    """The exception papermill reports, without its progress and kernel chatter."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "PapermillExecutionError" in line:
            return "\n".join(lines[i:])
    return "\n".join(lines[-15:])


# Papermill's and nbclient's records of when things ran: different on every run.
_TIMINGS = ("start_time", "end_time", "duration")
# A widget's view in an output (tqdm.auto's progress bars): a random model id, its state in the notebook's
# metadata, and rates that change on every run.
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# tqdm's text bar statistics, "[elapsed<remaining, rate]": a stream line holding them is a progress bar.
_PROGRESS = re.compile(r"\[\d+:\d\d(?::\d\d)?<[^\]\n]*\]")


def _relative_paths(root: Path):
    """A function replacing ``root`` (and, after it, the home folder) in a string: ``root/x`` -> ``x``,
    ``root`` alone -> ``.``, ``home/x`` -> ``~/x``."""
    patterns = [(re.compile(re.escape(str(root)) + r"(/|(?![\w.-]))"), lambda m: "" if m.group(1) else ".")]
    home = str(Path.home())
    if home not in ("/", str(root)):
        patterns.append((re.compile(re.escape(home) + r"(?=/|(?![\w.-]))"), lambda m: "~"))

    def replace(text: str) -> str:
        for pattern, repl in patterns:
            text = pattern.sub(repl, text)
        return text
    return replace


def _map_strings(value, fn):
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    return value


def _without_progress_bars(outputs: list) -> list:
    kept = []
    for output in outputs:
        if _WIDGET_VIEW in output.get("data", {}):
            continue
        if output.get("output_type") == "stream":
            lines = re.split(r"(?<=[\n\r])", output.get("text", ""))
            output["text"] = "".join(line for line in lines if line != "\r" and not _PROGRESS.search(line))
            if not output["text"].strip():
                continue
        kept.append(output)
    return kept


def clean_notebook(path: Path, root: Path = REPO_ROOT) -> None:
    """Make an executed notebook the same bytes on every run of the same inputs: drop the run's timings
    (papermill's start/end times and durations, nbclient's ``execution`` timestamps), drop progress bars
    (widget views and their state, tqdm text bars), give the parameters cell papermill injects a fixed id,
    and replace the absolute paths of this machine (``root``, the home folder) in sources, outputs and
    metadata."""
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    for record in [nb.metadata.get("papermill", {})] + [c.metadata.get("papermill", {}) for c in nb.cells]:
        for key in _TIMINGS:
            record.pop(key, None)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = _without_progress_bars(cell.outputs)
        if "id" in cell and "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"   # papermill gives the cell it adds a random id
    nbformat.write(nbformat.from_dict(_map_strings(nb, _relative_paths(Path(root).resolve()))), path)


def run_notebook(path: Path, scale: str, seeds: list[int] | None, results_dir: Path, threads: int,
                 root: Path = REPO_ROOT) -> Outcome:
    """Execute one notebook in its own papermill process (so notebooks share no state)."""
    output = results_dir / "notebooks" / path.name
    output.parent.mkdir(parents=True, exist_ok=True)
    parameters = {"scale": scale, "seeds": seeds, "output_dir": str(results_dir / path.stem)}
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **os.environ}
    print(f"[start] {path.stem}", flush=True)
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "papermill", str(path), str(output), "--kernel", KERNEL, "--cwd", str(path.parent),
         "--parameters_yaml", json.dumps(parameters), "--no-progress-bar", "--log-level", "WARNING"],
        capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if output.exists():
        clean_notebook(output, root)
    error = None if process.returncode == 0 else f"{_error_summary(process.stderr)}\n(executed notebook: {output})"
    print(f"[{'done' if error is None else 'FAILED'}] {path.stem} in {seconds:.0f} s", flush=True)
    return Outcome(path.stem, seconds, error)


def reproduce(scale: str, jobs: int = 1, only: list[str] | None = None, seeds: list[int] | None = None,
              notebooks_dir: Path | None = None, results_dir: Path | None = None) -> list[Outcome]:
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else REPO_ROOT / "notebooks"
    # Absolute: each notebook runs in its own folder (papermill --cwd).
    results_dir = Path(results_dir).resolve() if results_dir is not None else default_results_dir(scale)
    notebooks = sorted(notebooks_dir.glob("*.ipynb"))
    if only:
        unknown = sorted(set(only) - {p.stem for p in notebooks})
        if unknown:
            raise SystemExit(f"no notebook named {unknown} in {notebooks_dir}; "
                             f"choose from {[p.stem for p in notebooks]}")
        notebooks = [p for p in notebooks if p.stem in only]
    if not notebooks:
        raise SystemExit(f"no notebooks in {notebooks_dir}")
    # Split the cores between the notebooks running at the same time rather than oversubscribe them
    # (unless OMP_NUM_THREADS is set).
    threads = max(1, (os.cpu_count() or 1) // min(jobs, len(notebooks)))
    # Paths in the executed notebooks become relative to the folder holding notebooks and results (the checkout).
    root = Path(os.path.commonpath([notebooks_dir.resolve(), results_dir]))
    root = root if len(root.parts) > 1 else REPO_ROOT
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(lambda p: run_notebook(p, scale, seeds, results_dir, threads, root), notebooks))
    index = write_index(results_dir)
    print(f"index: {index}")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rfwp.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run in parallel")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="notebook names without .ipynb")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the scale's seeds")
    parser.add_argument("--notebooks", type=Path, help="default: notebooks/")
    parser.add_argument("--results-dir", type=Path, help="default: results/ (results/smoke/ at smoke scale)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    outcomes = reproduce(args.scale, args.jobs, args.only, args.seeds, args.notebooks, args.results_dir)
    failed = [o for o in outcomes if o.error is not None]
    total = sum(o.seconds for o in outcomes)
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} notebooks ran at scale {args.scale} "
          f"({total:.0f} s of notebook time)")
    for outcome in failed:
        print(f"\nFAILED: {outcome.notebook}\n{outcome.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
