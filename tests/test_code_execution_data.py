"""Code execution programs (RFWP App. B.1): targets against an interpreter written here from the task's
description, the authors' semantics, the statement rules, splits, the command and its errors."""
from __future__ import annotations

import random
import re
import subprocess
import sys

import pytest

from rfwp.tasks.code_execution import data

# One statement of the program text: an optional condition, then an assignment, an inc/dec or a print.
STATEMENT = re.compile(r"(?:if (\w) ([<>]) (\d) : )?(?:(\w) = (\d)|(\w) (\+\+|--)|print (\w)) ;")


def run(source: str, authors: bool = False) -> tuple[str, list[int]]:
    """The target line of a program and every value a variable takes. ``authors``: a conditional assignment
    leaves a defined variable as it is. A KeyError if a variable is read before it is defined."""
    env: dict[str, int] = {}
    targets, taken, end = [], [], 0
    for match in STATEMENT.finditer(source):
        assert match.start() == end, f"not a statement: {source[end:match.start()]!r}"
        end = match.end() + 1
        cond_var, comparison, bound, assigned, constant, stepped, step, printed = match.groups()
        output = "_"
        executes = cond_var is None or (env[cond_var] < int(bound) if comparison == "<" else env[cond_var] > int(bound))
        if executes and assigned and not (authors and cond_var and assigned in env):
            env[assigned] = int(constant)
        elif executes and stepped:
            env[stepped] += 1 if step == "++" else -1
        elif executes and printed:
            output = str(env[printed])
        taken += env.values()
        targets += ["_"] * (len(match.group(0).split()) - 1) + [output]
    assert end == len(source) + 1, f"not a statement: {source[end:]!r}"
    return " ".join(targets), taken


def sources(programs):
    return [" ".join(p.tokens) for p in programs]


@pytest.fixture(scope="module")
def programs():
    """1,000 programs of the paper's size per (N, semantics)."""
    return {(n, semantics): data.generate(n, 100, (800, 100, 100), seed=n, semantics=semantics)
            for n in (3, 5) for semantics in data.SEMANTICS}


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("semantics", data.SEMANTICS)
def test_targets_equal_the_interpreters(programs, n, semantics):
    for split in programs[n, semantics].values():
        for program in split:
            source = " ".join(program.tokens)
            assert run(source, authors=semantics == "original")[0] == " ".join(program.targets), source
            assert data.interpret(program.tokens, semantics) == program.targets


def test_short_programs_with_one_variable():
    for program in data.generate(1, 7, (2000, 1, 1), seed=0)["train"]:
        assert run(" ".join(program.tokens))[0] == " ".join(program.targets)


def test_original_semantics_is_the_authors():
    # App. B.1's example (its Out line has 27 tokens for the 22 inputs), then the authors' quirk: a
    # conditional assignment does not overwrite.
    example = "x = 3 ; y = 7 ; x ++ ; if y < 6 : print x ; print x ;".split()
    assert data.interpret(example) == data.interpret(example, "original") == ["_"] * 21 + ["4"]
    quirk = "x = 1 ; if x < 5 : x = 7 ; if x > 0 : y = 2 ; print x ; print y ;".split()
    assert data.interpret(quirk)[-4:] == ["7", "_", "_", "2"]
    assert data.interpret(quirk, "original")[-4:] == ["1", "_", "_", "2"]
    # The authors' range rule flips an inc/dec at the edge of [-8, 16] instead of rejecting it.
    assert data.flip_out_of_range(["x", "++", ";"], {"x": 16}) == ["x", "--", ";"]
    assert data.flip_out_of_range("if y > 2 : x -- ;".split(), {"x": -8, "y": 0})[-2] == "++"
    assert data.flip_out_of_range(["x", "++", ";"], {"x": 15}) == ["x", "++", ";"]


@pytest.mark.parametrize("semantics", data.SEMANTICS)
def test_range_rule_at_the_edge(semantics):
    """At x = 16 the authors' generator flips every ``x ++`` to ``x --``, even under a condition that fails;
    a real interpreter's data rejects only an ``x ++`` that would run."""
    rng = random.Random(0)
    steps = [data.draw_step(rng, "conditional", {"x": 16}, ("x",), semantics) for _ in range(2000)]
    assert all(after["x"] <= 16 for _, after, _ in steps)
    increments = [statement for statement, _, _ in steps if statement[-2] == "++"]
    if semantics == "original":
        assert not increments
    else:
        assert increments and all(statement[2] == "<" for statement in increments)  # "if x < c" fails at 16


@pytest.mark.parametrize("n, authors_percent", [(3, 17.8), (5, 21.7)])
def test_original_labels_agree_with_a_real_interpreter_as_rarely_as_the_authors(programs, n, authors_percent):
    """original-code.md §4: a real interpreter labels 1780/9999 (N = 3) and 2172/9999 (N = 5) of the authors'
    programs as their generator does; an undefined variable counts as a disagreement."""
    def agrees(source, target):
        try:
            return run(source)[0] == target
        except KeyError:
            return False
    train = programs[n, "original"]["train"]
    percent = 100 * sum(agrees(s, " ".join(p.targets)) for s, p in zip(sources(train), train)) / len(train)
    assert abs(percent - authors_percent) < 5  # 5 points: about 3.5 standard errors on 800 programs


@pytest.mark.parametrize("semantics", data.SEMANTICS)
def test_statement_rules_and_ranges(programs, semantics):
    for n in (3, 5):
        for program in programs[n, semantics]["train"]:
            statements = data.split_statements(program.tokens)
            assert len(statements) == 100
            assert statements[0][1] == "=" and statements[-1][0] == "print"
            assert {t for t in program.tokens if t.isalpha() and t not in ("print", "if")} <= set(data.VARIABLES[:n])
            constants = [s[i + 1] for s in statements for i, t in enumerate(s) if t in ("=", "<", ">")]
            assert set(constants) <= set("0123456789")
            _, taken = run(" ".join(program.tokens), authors=semantics == "original")  # raises on undefined
            assert all(-8 <= value <= 16 for value in taken)


def test_lengths_like_the_papers(programs):
    """App. B.1: about 370 to 550 tokens, mean about 450 (the authors' generator: 365-548, mean 456)."""
    lengths = [len(p.tokens) for p in programs[3, "correct"]["train"]]
    assert 350 < min(lengths) and max(lengths) < 570 and 446 < sum(lengths) / len(lengths) < 466


def test_determined_by_the_seed():
    first = data.generate(3, 30, (50, 5, 5), seed=7)
    assert data.generate(3, 30, (50, 5, 5), seed=7) == first
    assert data.generate(3, 30, (50, 5, 5), seed=8) != first


def test_splits_hold_no_program_twice():
    # With S = 2 and N = 1 there are only 10 programs, "x = c ; print x ;": the splits take each once.
    splits = data.generate(1, 2, (6, 2, 2), seed=0)
    every = [s for split in splits.values() for s in sources(split)]
    assert sorted(every) == [f"x = {c} ; print x ;" for c in range(10)]
    with pytest.raises(ValueError, match="distinct"):
        data.generate(1, 2, (9, 1, 1), seed=0)
    splits = data.generate(3, 4, (300, 100, 100), seed=0)
    every = [s for split in splits.values() for s in sources(split)]
    assert len(set(every)) == len(every) == 500


def test_command_writes_the_authors_layout_and_statistics(tmp_path, capsys):
    data.main(["--variables", "5", "--statements", "100", "--sizes", "30,5,5", "--seed", "1",
               "--semantics", "original", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "RFWP App. B.1" in printed and "mean_length" in printed and "interpreter_agreement_percent" in printed
    for split, size in [("train", 30), ("valid", 5), ("test", 5)]:
        sources_ = (tmp_path / f"{split}.src").read_text().splitlines()
        targets = (tmp_path / f"{split}.tgt").read_text().splitlines()
        assert len(sources_) == len(targets) == size
        for source, target in zip(sources_, targets):
            assert source == " ".join(source.split()) and len(source.split()) == len(target.split())
            assert run(source, authors=True)[0] == target
    loaded = data.load(tmp_path)
    assert len(loaded.inputs) == 5 + 19 and len(loaded.outputs) == 26
    test = loaded.splits["test"]  # the last split written above
    assert test.inputs.shape == test.targets.shape == test.mask.shape
    for i, (source, target) in enumerate(zip(sources_, targets)):
        length = int(test.mask[i].sum())
        assert length == len(source.split()) and not test.mask[i, length:].any()
        assert " ".join(loaded.inputs.tokens[t] for t in test.inputs[i, :length]) == source
        assert " ".join(loaded.outputs.tokens[t] for t in test.targets[i, :length]) == target


@pytest.mark.parametrize("arguments, message", [
    (["--variables", "0"], "variables"), (["--variables", "11"], "variables"), (["--statements", "1"], "statements"),
    (["--semantics", "python"], "semantics"), (["--sizes", "10,0,1"], "sizes"), (["--sizes", "10,1"], "sizes"),
    (["--sizes", "a,b,c"], "sizes")])
def test_bad_input_is_one_error_line(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        data.main([*arguments, "--out", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and message in error[-1] and "Traceback" not in "".join(error)
    assert not list(tmp_path.iterdir())


def test_bad_input_to_the_function():
    for arguments in [dict(variables=0), dict(statements=1), dict(semantics="python"), dict(sizes=(10, 1))]:
        with pytest.raises(ValueError):
            data.generate(**arguments)


def test_the_command_exits_2():
    done = subprocess.run([sys.executable, "-m", "rfwp.tasks.code_execution.data", "--variables", "0", "--out", "x"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith(
        "variables (N) must be between 1 and 10, got 0; the paper uses 3 and 5")
