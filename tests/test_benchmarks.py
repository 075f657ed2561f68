"""The benchmarks' code paths, on tiny sizes: ``python -m benchmarks.cpu --quick`` (every kind of case, a reference
loop skipped as on the full run, the tables), and the GPU benchmark and check where there is no CUDA."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def quick_run(name: str, out: Path) -> tuple[dict, str]:
    """``python -m benchmarks.<name> --quick --threads 1 --out out``: the result (``<name>.json``) and the report
    (``<name>.md``) it wrote."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--quick", "--threads", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / f"{name}.json").read_text()), (out / f"{name}.md").read_text()


@pytest.mark.slow
def test_cpu_benchmark_quick_run(tmp_path):
    result, table = quick_run("cpu", tmp_path)
    rows = {(r["kind"], r["op"], r["implementation"], r["d"]): r for r in result["rows"]}
    assert len(rows) == len(result["rows"]) == 2 * 5   # 5 cases at d and 2d
    skipped = rows[("op", "delta_lstm", "reference", 4)]
    assert skipped["tokens_per_s"] is None and skipped["note"] == "skipped: reference loop takes minutes"
    timed = [r for r in result["rows"] if r["tokens_per_s"] is not None]
    assert len(timed) == 8 and all(r["tokens_per_s"] > 0 and r["note"] == "" for r in timed), result["rows"]
    assert "| op | delta_lstm | reference | 16 | 4 |  |  | skipped: reference loop takes minutes |" in table
    assert "| op | delta_rule | compiled | 16 | 4 |" in table and "## Targets" in table and "## Memory scaling" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens where there is no CUDA")
def test_gpu_benchmark_and_check_without_cuda(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "no CUDA device here" in done.stdout, done.stderr
    assert not list(tmp_path.iterdir())
    if shutil.which("nvidia-smi") is None and not list(Path("/dev").glob("nvidia[0-9]*")):
        check = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh")], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "PATH": os.environ.get("PATH", "")})
        assert check.returncode == 0 and "no CUDA device here" in check.stdout, check.stdout + check.stderr


@pytest.mark.slow
def test_lm_benchmark_quick_run(tmp_path):
    """Speed of two models as ratios to the Transformer beside the paper's, and memory against length: the Delta
    Net's carried state does not grow with the segment, the Transformer's cache of keys and values does."""
    result, table = quick_run("lm", tmp_path)
    speed = {r["model"]: r for r in result["speed"]}
    assert speed["transformer"]["ratio_to_transformer"] == 1 and speed["delta_net"]["tokens_per_s"] > 0
    assert speed["delta_net"]["paper_ratio_to_transformer"] == pytest.approx(63 / 33)
    state = {(r["model"], r["length"]): r["state_MB"] for r in result["memory"]}
    assert state[("delta_net", 16)] == state[("delta_net", 64)]
    assert state[("transformer", 64)] == pytest.approx(4 * state[("transformer", 16)])
    assert "## Training speed" in table


@pytest.mark.slow
def test_atari_benchmark_quick_run(tmp_path):
    """Environment steps per second of two cores; the frames of an hour follow from the speed."""
    result, table = quick_run("atari", tmp_path)
    rows = result["speed"]
    assert {r["core"] for r in rows} == {"feedforward", "recurrent_delta_net"}
    for r in rows:
        assert r["frames_per_s"] == pytest.approx(r["batch"] * r["unroll"] / r["seconds_per_update"])
        assert r["frames_per_hour_M"] == pytest.approx(3600 * r["frames_per_s"] / 1e6)
    assert "| core |" in table


@pytest.mark.slow
def test_translation_benchmark_quick_run(tmp_path):
    """Seconds per update of two attentions at the smoke scale, and the minutes its updates take at that speed."""
    result, table = quick_run("translation", tmp_path)
    rows = {r["attention"]: r for r in result["speed"]}
    assert rows["softmax"]["d_dot"] == 64 and rows["dpfp"]["d_dot"] == 256
    for r in rows.values():
        assert r["scale_minutes"] == pytest.approx(r["scale_updates"] * r["seconds_per_update"] / 60)
    assert "| attention |" in table
