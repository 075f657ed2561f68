"""The algorithmic tasks' training (RFWP Sec. 4.2-4.3): metrics on hand-made predictions, every model learns,
runs resume, the paper's parameter counts, the tables and the claims' rules, and bad input."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import rfwp.paper
from rfwp.models import build_model
from rfwp.tasks import algorithmic
from rfwp.tasks.code_execution import claims as code_claims, trainer as code_execution
from rfwp.tasks.code_execution.presets import PAPER, PAPER_PARAMETERS
from rfwp.tasks.listops import claims as listops_claims, trainer as listops
from rfwp.train import TokenBatch

NO = code_execution.NO_OUTPUT_ID


def _logits(predictions: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(predictions, classes).float()


def test_code_execution_metrics_on_hand_made_predictions():
    """Two programs (the second padded): one wrong print makes its sequence wrong; padding is not scored."""
    targets = torch.tensor([[NO, NO, 5, NO, 7], [NO, 3, NO, 0, 0]])
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    predictions = torch.tensor([[NO, NO, 5, NO, 7], [NO, 4, NO, 9, 9]])   # second program: its print is wrong
    metrics = code_execution.CodeExecutionDataset().metrics(_logits(predictions, 26), TokenBatch(
        torch.zeros_like(targets), targets, mask))
    assert metrics == {"sequence_accuracy": (1.0, 2.0), "print_accuracy": (2.0, 3.0),
                       "no_output_accuracy": (5.0, 5.0)}
    wrong_silence = predictions.clone()
    wrong_silence[0, 0] = 5                                               # a wrong no-output token also counts
    metrics = code_execution.CodeExecutionDataset().metrics(_logits(wrong_silence, 26), TokenBatch(
        torch.zeros_like(targets), targets, mask))
    assert metrics["sequence_accuracy"] == (0.0, 2.0) and metrics["no_output_accuracy"] == (4.0, 5.0)


def test_listops_accuracy_reads_only_the_last_token():
    targets = torch.tensor([[0, 0, 4], [0, 7, 0]])
    mask = torch.tensor([[False, False, True], [False, True, False]])
    predictions = torch.tensor([[9, 9, 4], [9, 2, 9]])
    assert listops.ListOpsDataset().metrics(_logits(predictions, 10), TokenBatch(
        torch.zeros_like(targets), targets, mask)) == {"sequence_accuracy": (1.0, 2.0)}


def test_evaluation_batches_keep_every_scored_position():
    x = torch.arange(12).view(4, 3)
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=torch.bool)
    parts = algorithmic.batches(TokenBatch(x, x, mask), 2)
    assert [p.inputs.shape[1] for p in parts] == [2, 1]                  # each cut to its longest sequence
    assert sum(int(p.mask.sum()) for p in parts) == int(mask.sum())


@pytest.mark.parametrize("model", algorithmic.MODELS)
def test_every_model_learns_code_execution(model):
    """A few dozen steps at smoke scale lower the validation loss of each model of Table 2."""
    torch.manual_seed(0)
    trainer = algorithmic.make_trainer(code_execution.config(model, 3, "smoke"), seed=0)
    before = trainer.evaluate()["valid_loss"]
    for step in range(40):
        trainer.train_step(step)
    assert trainer.evaluate()["valid_loss"] < before - 0.3


def test_listops_model_learns():
    torch.manual_seed(0)
    trainer = algorithmic.make_trainer(listops.config("delta_net", 2, "smoke"), seed=0)
    before = trainer.evaluate()["valid_loss"]
    for step in range(100):
        trainer.train_step(step)
    assert trainer.evaluate()["valid_loss"] < before - 0.15


def test_a_run_resumes_to_the_same_record(tmp_path, monkeypatch):
    """A code execution run that crashes after a checkpoint resumes and ends as the uninterrupted run did;
    the record keeps the evaluation best in validation sequence accuracy."""
    whole = code_execution.run("delta_rnn", 3, "smoke", seed=0, results_dir=tmp_path / "a", cache_dir=tmp_path / "ca",
                               progress=False)

    class Crash(Exception):
        pass

    step = algorithmic.SequenceTrainer.train_step

    def crashing(self, s):
        if s == 15:
            raise Crash
        return step(self, s)
    monkeypatch.setattr(algorithmic.SequenceTrainer, "train_step", crashing)
    with pytest.raises(Crash):
        code_execution.run("delta_rnn", 3, "smoke", seed=0, results_dir=tmp_path / "b", cache_dir=tmp_path / "cb",
                           progress=False)
    monkeypatch.setattr(algorithmic.SequenceTrainer, "train_step", step)
    resumed = code_execution.run("delta_rnn", 3, "smoke", seed=0, results_dir=tmp_path / "b",
                                 cache_dir=tmp_path / "cb", progress=False)
    assert resumed.resumed_from == 10
    assert resumed.history.drop(columns="wall_time").equals(whole.history.drop(columns="wall_time"))
    assert resumed.best["valid_sequence_accuracy"] == whole.history.valid_sequence_accuracy.max()


@pytest.mark.parametrize("variables", [3, 5])
def test_paper_parameter_counts_within_two_percent(variables):
    counts = algorithmic.parameter_counts(PAPER.architecture, code_execution.CodeExecutionDataset(variables),
                                          PAPER_PARAMETERS)
    assert len(counts) == 6 and counts.difference_percent.abs().max() <= 2.0


def _runs(means: dict[str, list[float]], setting: str, value: int) -> pd.DataFrame:
    return pd.DataFrame([{setting: value, "model": m, "seed": s, "test_sequence_accuracy": a / 100}
                         for m, accs in means.items() for s, a in enumerate(accs)])


PAPER_LIKE = {"lstm": [99.0, 99.2], "transformer": [70.0, 72.0], "linear_transformer": [0.0, 0.2],
              "delta_net": [90.0, 91.0], "delta_rnn": [90.0, 92.0], "recurrent_delta_net": [92.0, 93.0]}


def test_summary_mean_std_min_max_in_table_order():
    table = algorithmic.summary(_runs(PAPER_LIKE, "variables", 3), "variables")
    assert list(table.model) == list(algorithmic.MODELS)
    lstm = table.set_index("model").loc["lstm"]
    assert lstm["mean"] == pytest.approx(99.1) and lstm["std"] == pytest.approx(0.1414, abs=1e-4)
    assert (lstm["min"], lstm["max"], lstm.seeds) == (pytest.approx(99.0), pytest.approx(99.2), 2)


def test_beside_paper_reads_the_papers_column_and_leaves_other_settings_empty():
    runs = pd.concat([_runs(PAPER_LIKE, "variables", 3), _runs(PAPER_LIKE, "variables", 4)])
    table = algorithmic.beside_paper(algorithmic.summary(runs, "variables"), rfwp.paper.table("rfwp", "T2"),
                                     {3: "code_exec_3vars"}).set_index(["variables", "model"])
    assert table.loc[(3, "LSTM"), "ours"] == "99.1 ± 0.1" and table.loc[(3, "LSTM"), "paper"] == "99.0 ± 0.1"
    assert table.loc[(3, "Delta RNN"), "paper"] == "90.8 ± 1.7" and table.loc[(4, "LSTM"), "paper"] == ""


def test_c4_rule():
    summary = algorithmic.summary(_runs(PAPER_LIKE, "variables", 3), "variables")
    assert code_claims.check_c4(summary)[0] is True
    for change in ({"linear_transformer": [6.0, 6.0]},        # not near 0
                   {"delta_rnn": [15.0, 15.0]},               # not far above the Linear Transformer
                   {"lstm": [92.0, 92.0]}):                   # not the best
        runs = _runs({**PAPER_LIKE, **change}, "variables", 3)
        assert code_claims.check_c4(algorithmic.summary(runs, "variables"))[0] is False
    partial = {m: a for m, a in PAPER_LIKE.items() if m != "lstm"}
    assert code_claims.check_c4(algorithmic.summary(_runs(partial, "variables", 3), "variables"))[0] is None


def test_c5_rule():
    listops_like = {"lstm": [88.0], "transformer": [79.0], "linear_transformer": [64.0], "delta_net": [85.0],
                    "delta_rnn": [83.0], "recurrent_delta_net": [83.0]}
    assert listops_claims.check_c5(algorithmic.summary(_runs(listops_like, "depth", 10), "depth"))[0] is True
    beaten = {**listops_like, "transformer": [84.0]}
    assert listops_claims.check_c5(algorithmic.summary(_runs(beaten, "depth", 10), "depth"))[0] is False


@pytest.mark.parametrize("make, message", [
    (lambda: code_execution.config("gru", 3, "smoke"), "unknown model 'gru'"),
    (lambda: code_execution.config("lstm", 0, "smoke"), "variables (N) must be between 1"),
    (lambda: code_execution.config("lstm", 3, "smoke", semantics="buggy"), "semantics"),
    (lambda: code_execution.config("lstm", 3, "huge"), "scale must be one of"),
    (lambda: listops.config("lstm", 0, "smoke"), "depth"),
    (lambda: listops.run("lstm", 10, "smoke", seed=0), "trains ListOps at depths [2], not 10"),
])
def test_bad_input_is_one_clear_error(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("model, shape, paper", [
    ("lstm", "table2", 0.4), ("lstm", "wide", 1.3), ("delta_net", "table2", 3.2), ("delta_rnn", "table2", 3.7),
    ("recurrent_delta_net", "table2", 3.2), ("delta_net", "deep", 1.1), ("delta_rnn", "deep", 1.3),
    ("recurrent_delta_net", "deep", 1.1)])
def test_table6_architectures_have_the_papers_parameter_counts(model, shape, paper):
    """RFWP Table 6 (5 variables): every width and depth at the paper's scale rounds to the paper's count."""
    dataset = code_execution.CodeExecutionDataset(variables=5, statements=100)
    with torch.device("meta"):
        net = build_model(model, algorithmic.model_config(model, code_execution.architecture(model, "paper", shape),
                                                          dataset))
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == paper


def test_table6_shapes_belong_to_their_models():
    with pytest.raises(ValueError, match=r"shape 'deep' is not one of 'lstm'.*\['table2', 'wide'\]"):
        code_execution.architecture("lstm", "cpu", "deep")
    deep = code_execution.architecture("delta_rnn", "cpu", "deep")
    table2 = code_execution.architecture("delta_rnn", "cpu")
    assert deep.n_layers == 2 * table2.n_layers and deep.d_model == table2.d_model // 2


def test_learning_curves_put_the_seeds_of_a_step_at_one_point():
    """Seeds read programs of other lengths, so their token counts at a step differ; the curve still has one
    point per evaluation step (the mean over seeds), not one per seed's token count."""
    import matplotlib.pyplot as plt
    histories = pd.DataFrame([dict(model=m, variables=3, seed=seed, step=step, tokens=100 * step + seed,
                                   valid_sequence_accuracy=0.1 * step)
                              for m in ("lstm", "delta_net") for seed in (0, 1, 2) for step in (1, 2, 3)])
    fig = algorithmic.plot_curves(histories, "variables", unit="lists")
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata())]
    assert len(lines) >= 2 and all(len(line.get_xdata()) == 3 for line in lines[:2])
    # fewer than a million counted: thousands, under the unit's name
    assert list(lines[0].get_xdata()) == pytest.approx([1e-3 * (100 * s + 1) for s in (1, 2, 3)])
    assert fig.axes[0].get_xlabel() == "training lists (thousands)"
    plt.close(fig)
