"""Every committed cpu run record is reused by the current code: its path and config hash are those of a run that a
notebook's sweep makes. A change of a config class, a preset or a run name would otherwise retrain (or orphan) the
committed runs silently (RFWP's and ICML's tables are regenerated from these records)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rfwp.tasks.algorithmic import MODELS
from rfwp.tasks.atari import presets as atari_presets, sweeps as atari_sweeps, trainer as atari
from rfwp.tasks.code_execution import presets as code_presets, sweeps as code_sweeps, trainer as code_execution
from rfwp.tasks.language_modelling import sweeps as lm_sweeps, trainer as language_modelling
from rfwp.tasks.listops import presets as listops_presets, trainer as listops
from rfwp.tasks.translation import presets as translation_presets, trainer as translation
from rfwp.train.runs import record_path

ROOT = Path(__file__).resolve().parents[1] / "results"


def _code_execution():
    p = code_presets.preset("cpu")
    for variables, seeds in p.seeds.items():
        yield code_execution.run, [dict(model=m, variables=variables) for m in MODELS], seeds
    yield (code_execution.run, [dict(model=m, variables=5, shape=s) for m, s in code_sweeps.TABLE6],
           p.seeds.get(5, (0,)))


def _listops():
    for depth, seeds in listops_presets.preset("cpu").seeds.items():
        yield listops.run, [dict(model=m, depth=depth) for m in MODELS], seeds


def _language_modelling():
    rows = lm_sweeps.NOTEBOOK_RUNS + lm_sweeps.TABLE4 + lm_sweeps.ICML_TABLE3 + lm_sweeps.icml_table5("cpu")
    points = [{k: v for k, v in p.items() if k != "scale"} for p in lm_sweeps.points(rows, "cpu")]
    yield language_modelling.run, points, (0,)


def _translation():
    p = translation_presets.preset("cpu")
    yield translation.run, [dict(attention=a, d_dot=d) for a, d in p.settings], p.seeds


def _atari():
    points = [{k: v for k, v in p.items() if k != "scale"} for p in atari_sweeps.points("cpu")]
    yield atari.run, points, atari_presets.preset("cpu").seeds


@pytest.mark.parametrize("task, sweeps", [("code_execution", _code_execution), ("listops", _listops),
                                          ("language_modelling", _language_modelling),
                                          ("translation", _translation), ("atari", _atari)])
def test_committed_cpu_records_are_those_the_sweeps_reuse(task, sweeps):
    committed = set((ROOT / "runs" / "cpu" / task).glob("**/seed*.json"))
    if not committed:
        pytest.skip(f"no committed cpu record of {task}")
    reused = set()
    for run, points, seeds in sweeps():
        for point in points:
            for seed in seeds:
                record = run(**point, scale="cpu", seed=seed, progress=False, train=False)
                if record is not None:
                    reused.add(record_path(record.name, seed, "cpu", ROOT))
    stale = sorted(str(p.relative_to(ROOT)) for p in committed - reused)
    assert not stale, f"committed records the current code would not reuse (config hash or name changed): {stale}"
