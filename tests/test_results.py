"""The papers' numbers as data (rfwp.paper) and the outputs API and index (rfwp.results)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rfwp import paper  # noqa: E402
from rfwp.results import Outputs, write_index  # noqa: E402


def test_contents_list_every_table_and_figure():
    rfwp, icml = paper.contents("rfwp"), paper.contents("icml")
    assert list(rfwp["ident"]) == [f"T{i}" for i in range(1, 9)] + [f"F{i}" for i in range(1, 13)]
    assert list(icml["ident"]) == [f"T{i}" for i in range(1, 7)] + [f"F{i}" for i in range(1, 6)]
    assert rfwp[rfwp["ident"].str.startswith("T")]["transcribed"].all()
    assert icml[icml["ident"].str.startswith("T")]["transcribed"].all()


@pytest.mark.parametrize("key, ident", [(k, i) for k in paper.PAPERS for i in paper.contents(k)["ident"]
                                        if i.startswith("T")])
def test_paper_tables_load_labelled_and_numeric(key, ident):
    df = paper.table(key, ident)
    assert len(df) > 0 and (df["source"] == "paper").all()
    numeric = df.select_dtypes("number")
    assert numeric.shape[1] >= 2, "numbers must parse as numbers (no '±' or thousands separators)"
    for column in df.columns:
        if column.endswith("_std"):
            assert (df[column].dropna() >= 0).all() and column[:-4] in df.columns


def test_transcription_spot_checks():
    t1 = paper.table("rfwp", "T1").set_index(["model", "context"])
    assert t1.loc[("Delta LSTM", "256"), "test_ppl"] == 34.7 and t1.loc[("RDN", "full"), "valid_ppl"] == 32.5
    t7 = paper.table("rfwp", "T7").set_index("game")
    assert t7.loc["Q*Bert", "delta_rnn"] == 6626 and t7.loc["James Bond", "delta_rnn"] == 2929.3
    t2 = paper.table("icml", "T2").set_index(["model", "update"])
    assert t2.loc[("Performer", "delta"), "medium_test_ppl"] == 31.8


def test_unknown_idents_are_rejected():
    with pytest.raises(ValueError, match="ICML has no table T9"):
        paper.table("icml", "T9")
    with pytest.raises(ValueError, match="paper must be one of"):
        paper.table("neurips", "T1")
    with pytest.raises(ValueError, match="T<number>"):
        paper.describe("rfwp", "Table1")


def test_outputs_and_index(tmp_path):
    out = Outputs(notebook="01_x", scale="smoke", output_dir=tmp_path / "01_x")
    ours = pd.DataFrame({"model": ["DPFP"], "update": ["delta"], "valid_ppl": [40.0]}).set_index("model")
    combined = out.table(ours, paper="icml", ident="T5", caption="c", paper_df=paper.table("icml", "T5"))
    assert list(combined["source"]) == ["ours (smoke)"] + ["paper"] * 5
    assert list(combined.columns[:3]) == ["source", "model", "update"]
    assert pd.read_csv(tmp_path / "01_x/icml_T5.csv").shape == combined.shape
    assert "| ours (smoke) | DPFP | delta | 40.0 |" in (tmp_path / "01_x/icml_T5.md").read_text()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    out.figure(fig, paper="icml", ident="F1", caption="f")
    plt.close(fig)
    with pytest.raises(ValueError, match="ICML has no figure F6"):
        out.figure(fig, paper="icml", ident="F6", caption="f")

    out.claim("C1", "first", reproduced=False, evidence="e1")
    out.claim("C2", "second", reproduced=None, evidence="e2")
    out.claim("C1", "first", reproduced=True, evidence="e3")   # replaces the earlier C1
    out.claim("C10", "tenth", reproduced=True, evidence="e4")
    claims = json.loads((tmp_path / "01_x/claims.json").read_text())
    assert {k: c["reproduced"] for k, c in claims.items()} == {"C1": True, "C2": None, "C10": True}
    listed = [line.split(" | ")[0] for line in (tmp_path / "01_x/claims.md").read_text().splitlines()[4:]]
    assert listed == ["| C1", "| C2", "| C10"]   # by number, not as strings

    index = write_index(tmp_path).read_text()
    rows = [line for line in index.splitlines() if line.startswith("| Table 5 |") or line.startswith("| Figure 1 |")]
    icml_t5 = [r for r in rows if "non-overcapacity" in r][0]
    assert "regenerated at `smoke` scale" in icml_t5 and "[md](01_x/icml_T5.md)" in icml_t5
    assert any("[png](01_x/icml_F1.png)" in r for r in rows)
    assert "| 01_x | C1 | reproduced | smoke |" in index and "| 01_x | C2 | undecided | smoke |" in index
    assert index.index("| 01_x | C2 |") < index.index("| 01_x | C10 |")
    assert index.count("not yet") == (8 + 12) + (6 + 5) - 2   # every item of both papers but the two written


def test_rewriting_the_same_outputs_gives_the_same_bytes(tmp_path):
    """No times (or temporary files) in what Outputs and the index write: regenerating unchanged results
    leaves ``git status`` clean."""
    def write_all():
        out = Outputs(notebook="01_x", scale="cpu", output_dir=tmp_path / "01_x")
        out.table(pd.DataFrame({"model": ["DPFP"], "update": ["delta"], "valid_ppl": [40.0]}), paper="icml",
                  ident="T5", caption="c", paper_df=paper.table("icml", "T5"))
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        out.figure(fig, paper="icml", ident="F1", caption="f")
        plt.close(fig)
        out.claim("C1", "first", reproduced=True, evidence="e")
        write_index(tmp_path)
        return {p.relative_to(tmp_path): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    first = write_all()
    assert write_all() == first
    assert sorted(map(str, first)) == ["01_x/claims.json", "01_x/claims.md", "01_x/icml_F1.png", "01_x/icml_T5.csv",
                                       "01_x/icml_T5.md", "01_x/manifest.json", "README.md"]
    manifest = json.loads(first[Path("01_x/manifest.json")])
    assert all("time" not in entry for entry in manifest["outputs"].values())
    assert all("time" not in claim for claim in json.loads(first[Path("01_x/claims.json")]).values())
