"""Sequential ListOps (RFWP App. B.3): labels against an evaluator written here, exact depths, the list rules,
splits, the command and its errors."""
from __future__ import annotations

import pytest

from rfwp.tasks.listops import data

FUNCTIONS = {"MIN": min, "MAX": max, "FIRST": lambda arguments: arguments[0]}


def parse(tokens: list[str], at: int = 0) -> tuple[int, int, list[int]]:
    """Recursive descent from the list opening at ``at``: its value, the position after it, and the number of
    arguments of it and of each of its sub-lists."""
    assert tokens[at][0] == "[", tokens[at:]
    function, arguments, counts, at = FUNCTIONS[tokens[at][1:]], [], [], at + 1
    while tokens[at] != "]":
        if tokens[at].isdigit():
            arguments.append(int(tokens[at]))
            at += 1
        else:
            value, at, inner = parse(tokens, at)
            arguments.append(value)
            counts += inner
    return function(arguments), at + 1, [len(arguments), *counts]


def depth(tokens: list[str]) -> int:
    """The deepest nesting of brackets."""
    level = deepest = 0
    for token in tokens:
        level += token.startswith("[") - (token == "]")
        deepest = max(deepest, level)
    return deepest


def test_the_papers_example():
    example = "[MAX 6 1 [FIRST 2 3 ] 0 [MIN 4 7 1 ] ]".split()
    assert data.evaluate(example) == parse(example)[0] == 6 and depth(example) == 2


@pytest.mark.parametrize("depth_", [1, 2, 5, 10, 19])
def test_labels_and_depths(depth_):
    splits = data.generate(depth_, (300, 50, 50), seed=depth_)
    for split in splits.values():
        for example in split:
            value, end, counts = parse(example.tokens)
            assert end == len(example.tokens), "one list, nothing after it"
            assert example.label == value and depth(example.tokens) == depth_
            assert all(2 <= count <= 5 for count in counts)
            assert set(example.tokens) <= set(data.VOCABULARY.tokens)


def test_lengths_and_labels_like_the_authors():
    """App. B.3, depth 10: lengths 37 to 364, mean 98; original-code.md §4: labels 0 and 9 are about 18-20%
    of them each."""
    examples = data.generate(10, (1000, 1, 1), seed=0)["train"]
    lengths = [len(e.tokens) for e in examples]
    assert min(lengths) >= 31 and 90 < sum(lengths) / len(lengths) < 106  # 31: the shortest list of depth 10
    labels = [e.label for e in examples]
    assert 0.13 < labels.count(0) / len(labels) < 0.25 and 0.13 < labels.count(9) / len(labels) < 0.25


def test_determined_by_the_seed():
    first = data.generate(5, (50, 5, 5), seed=3)
    assert data.generate(5, (50, 5, 5), seed=3) == first and data.generate(5, (50, 5, 5), seed=4) != first


def test_splits_hold_no_list_twice():
    splits = data.generate(1, (500, 100, 100), seed=0)  # depth 1 repeats often: [MIN 3 4 ] ...
    every = [" ".join(e.tokens) for split in splits.values() for e in split]
    assert len(set(every)) == len(every) == 700


def test_command_writes_label_tab_tokens_and_statistics(tmp_path, capsys):
    data.main(["--depth", "3", "--sizes", "40,5,5", "--seed", "1", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "label_0_percent" in printed and "mean_length" in printed
    loaded = data.load(tmp_path)
    for split, size in [("train", 40), ("valid", 5), ("test", 5)]:
        lines = (tmp_path / f"{split}.tsv").read_text().splitlines()
        assert len(lines) == size
        batch = loaded[split]
        for i, line in enumerate(lines):
            label, text = line.split("\t")
            tokens = text.split()
            assert text == " ".join(tokens) and int(label) == parse(tokens)[0] and depth(tokens) == 3
            # Scored only at the last token, where the target is the label.
            assert batch.mask[i].nonzero().flatten().tolist() == [len(tokens) - 1]
            assert int(batch.targets[i, len(tokens) - 1]) == int(label)
            assert [data.VOCABULARY.tokens[t] for t in batch.inputs[i, :len(tokens)]] == tokens


def test_paper_statistics_beside_ours():
    table = data.statistics(data.generate(15, (20, 2, 2), seed=0), 15)
    assert table.loc["mean_length", "paper"] == "190" and table.loc["max_length", "paper"] == "676"
    assert table.loc["label_0_percent", "paper"] == ""


@pytest.mark.parametrize("arguments, message", [
    (["--depth", "0"], "depth"), (["--depth", "20"], "depth"), (["--sizes", "1,2"], "sizes"),
    (["--sizes", "10,-1,1"], "sizes")])
def test_bad_input_is_one_error_line(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        data.main([*arguments, "--out", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and message in error[-1] and "Traceback" not in "".join(error)
    with pytest.raises(ValueError, match="depth"):
        data.generate(0)
