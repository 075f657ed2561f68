"""The papermill batch (rfwp.reproduce) on two tiny notebooks: one succeeds, one raises."""
from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

PARAMETERS = 'scale = "smoke"\nseeds = None\noutput_dir = None'

GOOD = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import rfwp.paper
from rfwp.results import Outputs
out = Outputs(notebook="01_good", scale=scale, output_dir=output_dir)
out.table(pd.DataFrame({"model": ["Delta Network"], "update": ["delta"], "small_valid_ppl": [99.0]}),
          paper="icml", ident="T2", caption="a test table", paper_df=rfwp.paper.table("icml", "T2"))
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
out.figure(fig, paper="icml", ident="F2", caption="a test figure")
out.claim(ident="C1", statement="a test claim", reproduced=True, evidence=f"seeds {seeds}")
from tqdm import tqdm
from tqdm.auto import tqdm as widget_tqdm
for _ in widget_tqdm(range(3), desc="widget bar"):
    pass
for _ in tqdm(range(3), desc="text bar"):
    pass
"""


def notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "rfwp", "display_name": "rfwp (Python 3)", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_batch_reports_failure_by_name_and_writes_index(tmp_path):
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    notebooks.mkdir()
    notebook(notebooks / "01_good.ipynb", GOOD)
    notebook(notebooks / "02_bad.ipynb", 'raise ValueError("deliberate failure in the second notebook")')
    process = subprocess.run(
        [sys.executable, "-m", "rfwp.reproduce", "--scale", "cpu", "--jobs", "2", "--seeds", "4", "5",
         "--notebooks", str(notebooks), "--results-dir", str(results)],
        capture_output=True, text=True, timeout=300)

    assert process.returncode == 1, process.stdout + process.stderr
    assert "FAILED: 02_bad" in process.stderr and "deliberate failure in the second notebook" in process.stderr
    assert "01_good" not in process.stderr
    assert "[done] 01_good" in process.stdout and "[FAILED] 02_bad" in process.stdout
    assert (results / "notebooks/01_good.ipynb").exists() and (results / "notebooks/02_bad.ipynb").exists()

    out = results / "01_good"
    table = (out / "icml_T2.md").read_text()
    assert "ours (cpu)" in table and "| paper |" in table and "99" in table and "37.1" in table
    assert (out / "icml_T2.csv").exists() and (out / "icml_F2.png").stat().st_size > 0
    assert "seeds [4, 5]" in (out / "claims.md").read_text()

    index = (results / "README.md").read_text()
    assert index.count("| Table 2 |") == 2   # one row per paper
    assert "[md](01_good/icml_T2.md)" in index and "[png](01_good/icml_F2.png)" in index
    assert "[notebook](notebooks/01_good.ipynb)" in index
    assert "at `cpu`" in index and "not yet" in index
    assert "| 01_good | C1 | reproduced | cpu |" in index
    for ident in [f"Table {i}" for i in range(1, 9)] + [f"Figure {i}" for i in range(1, 13)]:
        assert f"| {ident} |" in index

    # The executed notebook holds no run times, no progress bars and no absolute path (they become relative to
    # the folder holding notebooks/ and results/), so a rerun of the same inputs writes the same bytes everywhere.
    executed = (results / "notebooks/01_good.ipynb").read_text()
    for text in ("start_time", "end_time", "duration", "iopub", str(tmp_path), "application/vnd.jupyter.widget", "it/s", "100%"):
        assert text not in executed, text
    assert "C1 reproduced at scale cpu" in executed
    assert 'output_dir = \\"results/01_good\\"' in executed and '"input_path": "notebooks/01_good.ipynb"' in executed
    before = {p: p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}
    again = subprocess.run(
        [sys.executable, "-m", "rfwp.reproduce", "--scale", "cpu", "--only", "01_good", "--seeds", "4", "5",
         "--notebooks", str(notebooks), "--results-dir", str(results)],
        capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    after = {p: p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}
    assert after.keys() == before.keys()
    assert [str(p) for p in after if after[p] != before[p]] == []
