"""Code execution programs, RFWP Sec. 4.2 and App. B.1 (the setting of Fan et al., 2020): S statements over
N variables, read left to right; the target is the printed value at the ``;`` of each print that executes
and the no-output token ``_`` at every other token.

    assign       x = c ;            c in 0..9, any of the N variables (this defines it)
    inc/dec      x ++ ;  x -- ;     a defined variable
    print        print x ;          a defined variable
    conditional  if x < c : STMT    (or >) a defined x, c in 0..9, STMT one of the three basic statements

    In:  x = 3 ; y = 7 ; x ++ ; if y < 6 : print x ; print x ;      (App. B.1's example, whose Out
    Out: _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ 4                line has five tokens too many)

The first statement is an assignment and the last a print ("we hard-code the last statement to be a print",
App. B.1); every value stays in [-8, 16], the output vocabulary. As in the authors' generator
(original-code.md §4) a middle statement's kind is uniform over the four, a conditional's statement uniform
over the three basic kinds, variables and constants uniform.

Two semantics:
  "correct"   a real interpreter's. A statement that would take a value out of [-8, 16] is rejected and one
              of the same kind drawn again (App. B.1: "rejecting any statement which would result in such
              values").
  "original"  the authors' generator, on whose labels the paper's numbers were measured: a conditional
              assignment writes only to a variable not defined yet (``x = 1 ; if x < 5 : x = 7 ; print x ;``
              prints 1), and an inc/dec that would leave the range is flipped to the other direction instead
              of rejected, judged on the value before the statement even where its condition fails. A real
              interpreter labels only about 20% of its programs the same (original-code.md §4).

    python -m rfwp.tasks.code_execution.data --variables 3 --statements 100 --sizes 10000,1000,1000 \\
        --seed 42 --semantics correct --out DIR

writes DIR/{train,valid,test}.src (a program a line, tokens separated by single spaces) and .tgt (a target
token per input token), the authors' layout, and prints the statistics beside the paper's.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple, Sequence

import pandas as pd

from rfwp.tasks import generated
from rfwp.tasks.generated import SPLITS, Vocabulary
from rfwp.train import TokenBatch

SEMANTICS = ("correct", "original")
VARIABLES = ("x", "y", "z", "a", "b", "c", "d", "e", "f", "g")  # the authors' names, in their order
LOWEST, HIGHEST = -8, 16                                       # App. B.1: values "between -8 and 16"
CONSTANTS = tuple(str(c) for c in range(10))                   # assigned and compared constants (authors' code)
KEYWORDS = ("=", "++", "--", ";", "print", "if", "<", ">", ":")
NO_OUTPUT = "_"                                                # the authors' token ("N" in App. B.1's example)
BASIC = ("assign", "incdec", "print")
KINDS = BASIC + ("conditional",)
OUTPUTS = Vocabulary((NO_OUTPUT, *(str(v) for v in range(LOWEST, HIGHEST + 1))))

Values = dict[str, int]  # the defined variables and their values


class Program(NamedTuple):
    tokens: list[str]
    targets: list[str]  # one per token


def input_vocabulary(variables: int) -> Vocabulary:
    """The N variable names, the keywords and the constants: N + 19 tokens (22 and 24 for N = 3 and 5, as in
    the authors' data)."""
    return Vocabulary((*VARIABLES[:variables], *KEYWORDS, *CONSTANTS))


def check(variables: int, statements: int, semantics: str) -> None:
    if not 1 <= variables <= len(VARIABLES):
        raise ValueError(f"variables (N) must be between 1 and {len(VARIABLES)}, got {variables}; "
                         f"the paper uses 3 and 5")
    if statements < 2:
        raise ValueError(f"statements (S) must be at least 2 (the first an assignment, the last a print), "
                         f"got {statements}; the paper uses 100")
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {', '.join(SEMANTICS)}, got {semantics!r}")


# --- running a program -----------------------------------------------------------------------------------

def execute(statement: list[str], values: Values, semantics: str) -> tuple[Values, int | None]:
    """Run one statement: the values after it and the value it prints (None if it prints nothing). A KeyError
    if it reads a variable that is not defined."""
    if statement[0] == "if":
        variable, comparison, constant, body = statement[1], statement[2], int(statement[3]), statement[5:]
        holds = values[variable] < constant if comparison == "<" else values[variable] > constant
        # The authors' quirk: a conditional assignment never overwrites a defined variable.
        overwrite = body[1] == "=" and body[0] in values
        if not holds or (semantics == "original" and overwrite):
            return values, None
        return execute(body, values, semantics)
    if statement[0] == "print":
        return values, values[statement[1]]
    variable, operator = statement[0], statement[1]
    value = int(statement[2]) if operator == "=" else values[variable] + (1 if operator == "++" else -1)
    return {**values, variable: value}, None


def statement_targets(statement: list[str], printed: int | None) -> list[str]:
    """No output at every token but the closing ``;`` of a print that executes, which holds its value."""
    return [NO_OUTPUT] * (len(statement) - 1) + [NO_OUTPUT if printed is None else str(printed)]


def split_statements(tokens: Sequence[str]) -> list[list[str]]:
    """Every statement ends with ``;``, a conditional only after its statement."""
    ends = [i + 1 for i, token in enumerate(tokens) if token == ";"]
    return [list(tokens[start:end]) for start, end in zip([0, *ends], ends)]


def interpret(tokens: Sequence[str], semantics: str = "correct") -> list[str]:
    """The targets of a program run under ``semantics``; a KeyError if it reads an undefined variable."""
    values: Values = {}
    targets = []
    for statement in split_statements(tokens):
        values, printed = execute(statement, values, semantics)
        targets += statement_targets(statement, printed)
    return targets


# --- drawing a program -----------------------------------------------------------------------------------

def draw_basic(rng: random.Random, kind: str, values: Values, names: Sequence[str]) -> list[str]:
    if kind == "assign":
        return [rng.choice(names), "=", rng.choice(CONSTANTS), ";"]
    variable = rng.choice(list(values))  # only defined variables are read
    if kind == "print":
        return ["print", variable, ";"]
    return [variable, rng.choice(("++", "--")), ";"]


def draw_statement(rng: random.Random, kind: str, values: Values, names: Sequence[str]) -> list[str]:
    if kind != "conditional":
        return draw_basic(rng, kind, values, names)
    condition = ["if", rng.choice(list(values)), rng.choice(("<", ">")), rng.choice(CONSTANTS), ":"]
    return condition + draw_basic(rng, rng.choice(BASIC), values, names)


def flip_out_of_range(statement: list[str], values: Values) -> list[str]:
    """The authors' range rule: an inc/dec that would leave [-8, 16] goes the other way (whether or not a
    condition before it holds)."""
    variable, operator = statement[-3], statement[-2]
    if (operator, values[variable]) in (("++", HIGHEST), ("--", LOWEST)):
        return statement[:-2] + ["--" if operator == "++" else "++", ";"]
    return statement


def in_range(values: Values) -> bool:
    return all(LOWEST <= value <= HIGHEST for value in values.values())


def draw_step(rng: random.Random, kind: str, values: Values, names: Sequence[str],
              semantics: str) -> tuple[list[str], Values, int | None]:
    """A statement of ``kind`` that keeps every value in range, run: the statement, the values after it and
    what it prints."""
    while True:
        statement = draw_statement(rng, kind, values, names)
        if semantics == "original" and statement[-2] in ("++", "--"):
            statement = flip_out_of_range(statement, values)
        after, printed = execute(statement, values, semantics)
        if in_range(after):  # else rejected (only under "correct": the flip keeps "original" in range)
            return statement, after, printed


def draw_program(rng: random.Random, variables: int, statements: int, semantics: str) -> Program:
    names = VARIABLES[:variables]
    values: Values = {}
    tokens, targets = [], []
    for i in range(statements):
        kind = "assign" if i == 0 else "print" if i == statements - 1 else rng.choice(KINDS)
        statement, values, printed = draw_step(rng, kind, values, names, semantics)
        tokens += statement
        targets += statement_targets(statement, printed)
    return Program(tokens, targets)


def generate(variables: int = 3, statements: int = 100, sizes: Sequence[int] = generated.PAPER_SIZES,
             seed: int = 42, semantics: str = "correct") -> dict[str, list[Program]]:
    """Train, valid and test programs of S = ``statements`` over N = ``variables``, no program twice."""
    check(variables, statements, semantics)
    rng = random.Random(seed)
    return generated.distinct_splits(lambda: draw_program(rng, variables, statements, semantics),
                                     key=lambda program: " ".join(program.tokens), sizes=sizes)


# --- files, statistics, tensors ----------------------------------------------------------------------------

def write(splits: dict[str, list[Program]], out: Path) -> None:
    for split, programs in splits.items():
        generated.write_lines(out / f"{split}.src", (" ".join(p.tokens) for p in programs))
        generated.write_lines(out / f"{split}.tgt", (" ".join(p.targets) for p in programs))


def agrees_with_interpreter(program: Program) -> bool:
    try:
        return interpret(program.tokens) == program.targets
    except KeyError:  # an "original" program that reads a variable a real interpreter never defined
        return False


def split_statistics(programs: list[Program]) -> dict[str, float]:
    printed = [int(t) for p in programs for t in p.targets if t != NO_OUTPUT]
    agreeing = sum(map(agrees_with_interpreter, programs))
    return {**generated.length_statistics([len(p.tokens) for p in programs]),
            "prints_per_program": round(len(printed) / len(programs), 1),
            "min_printed": min(printed), "max_printed": max(printed),
            "input_vocabulary": len({t for p in programs for t in p.tokens}),
            "output_vocabulary": len({t for p in programs for t in p.targets}),
            "interpreter_agreement_percent": round(100 * agreeing / len(programs), 1)}


def statistics(splits: dict[str, list[Program]], variables: int, statements: int) -> pd.DataFrame:
    """Per split: lengths in tokens, executed prints, printed values, vocabularies in use and the share of
    programs labelled as a real interpreter would; beside what the paper (or the authors' generator) gives."""
    ours = {split: split_statistics(programs) for split, programs in splits.items()}
    return generated.beside_paper(ours, "code_execution", f"N={variables} S={statements}")


class CodeExecutionData(NamedTuple):
    splits: dict[str, TokenBatch]  # per split: input ids, target ids (OUTPUTS), mask of the real positions
    inputs: Vocabulary             # input_vocabulary(N)
    outputs: Vocabulary            # OUTPUTS: no output, then -8..16


def load(directory: str | Path) -> CodeExecutionData:
    """A directory written by ``write`` as tensors for ``rfwp.train.SequenceTrainer`` (every real position is
    scored, the no-output ones too, as in the authors' loss). N is read off the last variable name in use."""
    directory = Path(directory)
    lines = {split: (generated.read_lines(directory / f"{split}.src"), generated.read_lines(directory / f"{split}.tgt"))
             for split in SPLITS}
    used = {token for sources, _ in lines.values() for line in sources for token in line.split()}
    inputs = input_vocabulary(max(i for i, name in enumerate(VARIABLES) if name in used) + 1)
    splits = {}
    for split, (sources, targets) in lines.items():
        programs = [(s.split(), t.split()) for s, t in zip(sources, targets)]
        if len(sources) != len(targets) or any(len(s) != len(t) for s, t in programs):
            raise ValueError(f"{directory / split}.src and .tgt must have a target token per input token")
        ids, mask = generated.pad([inputs.ids(s) for s, _ in programs])
        target_ids, _ = generated.pad([OUTPUTS.ids(t) for _, t in programs])
        splits[split] = TokenBatch(ids, target_ids, mask)
    return CodeExecutionData(splits, inputs, OUTPUTS)


def main(argv: Sequence[str] | None = None) -> None:
    parser = generated.command("Write code execution programs (RFWP App. B.1) and print their statistics.")
    parser.add_argument("--variables", type=int, default=3, help="N, the number of variables (paper: 3 or 5)")
    parser.add_argument("--statements", type=int, default=100, help="S, statements a program (paper: 100)")
    parser.add_argument("--semantics", default="correct", choices=SEMANTICS,
                        help="correct (a real interpreter's, default) or original (the authors' generator's)")
    args = parser.parse_args(argv)
    splits = generated.generate_or_exit(parser, generate, variables=args.variables, statements=args.statements,
                                        sizes=args.sizes, seed=args.seed, semantics=args.semantics)
    write(splits, args.out)
    print(f"code execution, N = {args.variables} variables, S = {args.statements} statements, "
          f"{args.semantics} semantics, seed {args.seed}: {args.out}/{{{','.join(SPLITS)}}}.{{src,tgt}}")
    print(statistics(splits, args.variables, args.statements).to_string())


if __name__ == "__main__":
    main()
