"""The translation data (rfwp/tasks/translation): diatheke's output parsed and stripped of markup, the verse
alignment and its drops, the split by whole chapters, WMT14 read from a folder, the joint subword vocabulary's
round trip and cache, BLEU, and one clear error line for bad input."""
import shutil

import pytest
import sacrebleu

from rfwp.tasks.translation import bleu, corpus, subwords

# A hand-written extract in the markup diatheke prints for the WEB module (`diatheke -b engWEB2015eb -k Gen-Rev`).
ENGLISH_OUTPUT = "\n".join([
    'Genesis 1:1: <w savlm="strong:H7225">In</w> <w savlm="strong:H7225">the beginning</w>, '
    '<w savlm="strong:H0430">God</w><w savlm="strong:H1254">created</w> the earth. <div eID="gen25" type="x-p"/>',
    'Genesis 1:2: The earth was <w savlm="strong:H8414">empty</w>.<note n="a" type="x-footnote">Or, void</note> ',
    'Psalms 2:12: Blessed are all those who take refuge in him. <chapter eID="Ps.2"/>',
    '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="gen7860"/> <l level="1" sID="gen7861"/>'
    'Psalms 3:1: Yahweh, how my adversaries have increased!<l eID="gen7861" level="1"/> '
    '<l level="2" sID="gen7862"/>Many are those who rise up against me. <l eID="gen7862" level="2"/>',
    '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="gen7860"/> <l level="1" sID="gen7861"/>'
    'Psalms 3:2: <q marker="">“There is no help for him.”</q> <l type="selah">Selah.</l>',
    'Song of Solomon 1:5: <speaker>Beloved</speaker> <lg sID="gen15629"/>I am dark, but lovely.',
    'Tobit 6:18: ',
    'Revelation of John 22:21: <w savlm="strong:G5485">Grace</w> be with all. Amen. <chapter eID="Rev.22"/> '
    '<div sID="gen35837" type="glossary"/> <milestone n="Glossary" type="x-usfm-h"/> The following words are used.',
    "(engWEB2015eb)", ""])


def test_verses_are_plain_text_by_reference():
    assert corpus.verses(ENGLISH_OUTPUT) == {
        ("Genesis", 1, 1): "In the beginning, God created the earth.",   # a space where the module lost one
        ("Genesis", 1, 2): "The earth was empty.",   # without its footnote
        ("Psalms", 2, 12): "Blessed are all those who take refuge in him.",
        # The psalm's title is added where it is new, not where diatheke repeats it.
        ("Psalms", 3, 1): "A Psalm by David. Yahweh, how my adversaries have increased! Many are those who rise up "
                          "against me.",
        ("Psalms", 3, 2): "“There is no help for him.” Selah.",
        ("Song of Solomon", 1, 5): "I am dark, but lovely.",   # without the speaker label
        ("Tobit", 6, 18): "",
        ("Revelation of John", 22, 21): "Grace be with all. Amen.",   # without the glossary diatheke appends
    }


def test_an_unexpected_line_is_one_error_line():
    with pytest.raises(ValueError) as error:
        corpus.verses("Genesis 1:1: In the beginning.\nNo reference here\n(engWEB2015eb)\n")
    assert one_line(error) == "line 2 of diatheke's output is not a verse: 'No reference here'"


def test_align_drops_verses_of_one_text_empty_verses_and_mismatched_chapters():
    english = {("Genesis", 1, 1): "In the beginning", ("Genesis", 1, 2): "The earth",
               ("Numbers", 12, 1): "Miriam", ("Numbers", 12, 2): "Afterward the people travelled",
               ("Numbers", 13, 1): "Yahweh spoke", ("Numbers", 14, 1): "All the congregation",
               ("Tobit", 1, 1): "The book of Tobit",
               ("Acts", 8, 36): "Here is water", ("Acts", 8, 37): "", ("Acts", 8, 38): "He commanded",
               ("Acts", 9, 1): "But Saul"}
    spanish = {("Genesis", 1, 1): "En el principio", ("Genesis", 1, 2): "Y la tierra",
               ("Numbers", 12, 1): "María", ("Numbers", 12, 2): "",
               ("Numbers", 13, 1): "Y después movió el pueblo", ("Numbers", 14, 1): "Entonces toda la congregación",
               ("Acts", 8, 36): "He aquí agua", ("Acts", 8, 37): "Y Felipe dijo", ("Acts", 8, 38): "Y mandó",
               ("Acts", 9, 1): "Y Saulo", ("Revelation of John", 12, 18): "Y yo me paré"}
    pairs, dropped = corpus.align(english, spanish)
    # Numbers 12 ends in a verse the Spanish leaves empty: its words begin Numbers 13, which is shifted and dropped
    # too. Acts 8:37 is empty inside its chapter: Acts 8 goes, Acts 9 stays.
    assert pairs == {("Genesis", 1, 1): ("In the beginning", "En el principio"),
                     ("Genesis", 1, 2): ("The earth", "Y la tierra"),
                     ("Numbers", 14, 1): ("All the congregation", "Entonces toda la congregación"),
                     ("Acts", 9, 1): ("But Saul", "Y Saulo")}
    assert list(pairs) == [("Genesis", 1, 1), ("Genesis", 1, 2), ("Numbers", 14, 1), ("Acts", 9, 1)]
    assert dropped == {"source_only": 1, "target_only": 1, "empty": 2, "mismatched_chapters": 4}


def chapters_output(language: str) -> str:
    """diatheke-like output of 60 chapters of two verses each, every text naming its reference."""
    return "".join(f"{book} {chapter}:{verse}: {language} {book} {chapter} {verse}\n"
                   for book in ("Genesis", "Mark") for chapter in range(1, 31) for verse in (1, 2))


def test_split_is_by_whole_chapters_fixed_and_disjoint():
    bible = corpus.bible(chapters_output("en"), chapters_output("es"))
    assert bible.name == "bible_en_es" and bible.languages == ("en", "es")
    chapters = {}
    for split in corpus.SPLITS:
        text = getattr(bible, split)
        for source, target in zip(text.source, text.target):
            _, book, chapter, _ = source.split()
            assert target == source.replace("en", "es", 1)
            chapters.setdefault((book, chapter), set()).add(split)
    # Every verse is in one split and both verses of a chapter in the same one.
    assert sum(len(getattr(bible, split)) for split in corpus.SPLITS) == 120
    assert len(chapters) == 60 and all(len(splits) == 1 for splits in chapters.values())
    # The rule depends on the book and chapter only: these are the held-out chapters of Genesis in the real corpus.
    held_out = {chapter: splits.pop() for chapter, splits in chapters.items() if splits != {"train"}}
    assert held_out["Genesis", "4"] == held_out["Genesis", "25"] == "valid"
    assert held_out["Genesis", "13"] == held_out["Genesis", "19"] == "test"
    assert [corpus.split_of("Genesis", chapter) for chapter in (1, 4, 13)] == ["train", "valid", "test"]
    again = corpus.bible(chapters_output("en"), chapters_output("es"))
    assert all(getattr(again, split) == getattr(bible, split) for split in corpus.SPLITS)


def write_wmt14(directory, lines=None):
    directory.mkdir(exist_ok=True)
    lines = lines or {}
    for name in corpus.WMT14_FILES:
        (directory / name).write_text(lines.get(name, ""), encoding="utf-8")


def test_wmt14_is_read_as_given(tmp_path):
    write_wmt14(tmp_path, {"train.en": "Hello world .\n  Resumption of the session\n",
                           "train.de": "Hallo Welt .\nWiederaufnahme der Sitzungsperiode  \n",
                           "valid.en": "A\rB\n", "valid.de": "C\n", "test.en": "x\n", "test.de": "y\n"})
    loaded = corpus.load("wmt14_en_de", tmp_path)
    assert loaded.name == "wmt14_en_de" and loaded.languages == ("en", "de") and loaded.dropped == {}
    assert loaded.train == corpus.ParallelText(("Hello world .", "Resumption of the session"),
                                               ("Hallo Welt .", "Wiederaufnahme der Sitzungsperiode"))
    assert loaded.valid.source == ("A\rB",)   # lines end at "\n" only
    assert len(loaded.test) == 1


def test_missing_wmt14_files_are_one_error_line(tmp_path):
    write_wmt14(tmp_path)
    (tmp_path / "test.de").unlink()
    with pytest.raises(ValueError) as error:
        corpus.load("wmt14_en_de", tmp_path)
    message = one_line(error)
    assert "train.en, train.de, valid.en, valid.de, test.en, test.de" in message
    assert f"{tmp_path} lacks test.de" in message and corpus.WMT14_URL in message and "newstest2014" in message
    with pytest.raises(ValueError) as error:
        corpus.load("wmt14_en_de")
    assert "no data directory was given" in one_line(error) and corpus.WMT14_URL in one_line(error)


def test_unequal_wmt14_sides_and_bad_corpus_arguments_are_one_error_line(tmp_path):
    write_wmt14(tmp_path, {"valid.en": "a\nb\n", "valid.de": "a\n"})
    with pytest.raises(ValueError) as error:
        corpus.load("wmt14_en_de", tmp_path)
    assert one_line(error).startswith("wmt14_en_de: valid.en has 2 lines but valid.de has 1")
    with pytest.raises(ValueError) as error:
        corpus.load("europarl")
    assert one_line(error) == "unknown corpus 'europarl'; choose one of bible_en_es, wmt14_en_de"
    with pytest.raises(ValueError) as error:
        corpus.load("bible_en_es", tmp_path)
    assert "takes no data directory" in one_line(error)


def test_missing_diatheke_is_one_error_line(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda program: None)
    with pytest.raises(FileNotFoundError) as error:
        corpus.load(cache_dir=tmp_path)
    assert "apt-get install diatheke sword-text-web sword-text-sparv" in one_line(error)


ENGLISH = ["In the beginning, God created the heavens and the earth.", "The earth was formless and empty.",
           "God said, “Let there be light,” and there was light."]
SPANISH = ["EN el principio crió Dios los cielos y la tierra.", "Y la tierra estaba desordenada y vacía.",
           "Y dijo Dios: Sea la luz: y fué la luz."]


def tiny_corpus(name="tiny"):
    text = corpus.ParallelText(tuple(ENGLISH), tuple(SPANISH))
    return corpus.Corpus(name, ("en", "es"), text, text, text, dropped={})


def test_subwords_round_trip_to_the_normalised_text(tmp_path):
    vocabulary = subwords.learn(tiny_corpus(), 340, tmp_path)
    assert len(vocabulary) == 340
    texts = ENGLISH + SPANISH + ["  God  said:\tΩmega ﬁrst 😀 "]   # unseen characters, odd spacing, a ligature
    ids = vocabulary.encode(texts)
    assert all(0 < len(row) and min(row) > subwords.EOS for row in ids)   # no special ids added
    assert vocabulary.decode(ids) == ENGLISH + SPANISH + ["God said: Ωmega first 😀"]
    assert [vocabulary.normalize(text) for text in texts] == vocabulary.decode(ids)
    # Both languages share one vocabulary; padding, BOS and EOS decode to nothing.
    assert max(map(len, vocabulary.encode(["la tierra", "the earth"]))) <= 4
    padded = [subwords.BOS, *ids[0], subwords.EOS, subwords.PAD, subwords.PAD]
    assert vocabulary.decode([padded]) == [ENGLISH[0]]


def test_subwords_are_deterministic_and_cached(tmp_path, monkeypatch):
    first = subwords.learn(tiny_corpus(), 340, tmp_path / "a")
    assert subwords.learn(tiny_corpus(), 340, tmp_path / "b").model == first.model
    assert len(list((tmp_path / "a").glob("tiny-subwords340-*.model"))) == 1

    def learn_again(sentences, size):
        raise AssertionError("learnt again although cached")
    monkeypatch.setattr(subwords, "train_model", learn_again)
    assert subwords.learn(tiny_corpus(), 340, tmp_path / "a").model == first.model
    with pytest.raises(AssertionError):   # another size is another vocabulary
        subwords.learn(tiny_corpus(), 360, tmp_path / "a")


def test_too_large_a_vocabulary_is_one_error_line(tmp_path):
    with pytest.raises(ValueError) as error:
        subwords.learn(tiny_corpus(), 100, tmp_path)
    assert one_line(error).startswith("cannot learn 100 subwords:")


def test_bleu_is_sacrebleus_corpus_bleu():
    hypotheses = ["the cat sat on the mat", "It is raining."]
    references = ["the cat sat on a mat", "It is raining today."]
    score, signature = bleu.bleu(hypotheses, references)
    assert score == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert signature == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    # By hand: 1 to 4-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (brevity penalty 1).
    one = bleu.bleu(hypotheses[:1], references[:1]).score
    assert one == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert bleu.bleu(references, references).score == pytest.approx(100)
    with pytest.raises(ValueError) as error:
        bleu.bleu(hypotheses, references[:1])
    assert "one reference per hypothesis" in one_line(error)


def test_statistics_count_pairs_words_and_subwords_beside_wmt14(tmp_path):
    tiny = tiny_corpus()
    table = corpus.statistics(tiny, subwords.learn(tiny, 340, tmp_path))
    assert table.loc["train_pairs", "tiny"] == "3" and table.loc["train_pairs", "WMT14"] == "4500000"
    assert table.loc["test_source_words", "tiny"] == str(sum(len(text.split()) for text in ENGLISH))
    assert int(table.loc["valid_target_subwords", "tiny"]) > int(table.loc["valid_target_words", "tiny"])
    assert table.loc["vocabulary", "tiny"] == "340" and table.loc["vocabulary", "WMT14"] == "32000"
    assert "App. E" in table.loc["vocabulary", "WMT14 source"]
    assert "vocabulary" not in corpus.statistics(tiny).index


def test_command_prints_the_statistics_and_bad_input_is_one_error_line(tmp_path, capsys):
    write_wmt14(tmp_path / "wmt", {name: "\n".join(ENGLISH if name.endswith(".en") else SPANISH) + "\n"
                                   for name in corpus.WMT14_FILES})
    corpus.main(["--corpus", "wmt14_en_de", "--data-dir", str(tmp_path / "wmt"), "--cache-dir", str(tmp_path),
                 "--vocabulary-size", "340"])
    printed = capsys.readouterr().out
    assert "train_source_subwords" in printed and "4500000" in printed
    with pytest.raises(SystemExit) as exit_:
        corpus.main(["--corpus", "wmt14_en_de", "--data-dir", str(tmp_path / "nowhere")])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and "nowhere lacks train.en" in error.strip().splitlines()[-1]
    assert "Traceback" not in error


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("diatheke") is None,
                    reason="diatheke is not installed (apt-get install diatheke sword-text-web sword-text-sparv)")
def test_the_bible_loads_in_a_plausible_size(tmp_path):
    bible = corpus.load(cache_dir=tmp_path)   # an empty cache: extracted anew (about 12 s)
    sizes = {split: len(getattr(bible, split)) for split in corpus.SPLITS}
    # 31,102 verses in both; 733 in the 28 chapters whose versification differs, and 25 empty ones, are dropped.
    assert 29_500 < sum(sizes.values()) < 31_102 and all(600 < sizes[split] < 1_300 for split in ("valid", "test"))
    assert bible.dropped["source_only"] > 6_000 and bible.dropped["target_only"] == 0   # the WEB's deuterocanon
    assert bible.train.source[0] == "In the beginning, God created the heavens and the earth."
    assert bible.train.target[0] == "EN el principio crió Dios los cielos y la tierra."
    assert "A Psalm by David. Yahweh is my shepherd; I shall lack nothing." in bible.test.source   # Psalm 23:1
    assert not any(character in text for split in corpus.SPLITS for side in ("source", "target")
                   for text in getattr(getattr(bible, split), side) for character in "<>")
    words = sum(len(text.split()) for text in bible.train.source)
    assert 650_000 < words < 800_000
    assert corpus.load(cache_dir=tmp_path).test == bible.test   # read back from the cache
