"""Parallel corpora for machine translation (ICML 2021 Sec. 6.2, App. E): WMT14 English–German from a folder the
user provides, and an embedded default, the Bible in English and Spanish, aligned verse by verse.

Both are read as sentence pairs, source English. The subword vocabulary (``subwords``) and BLEU (``bleu``) are
separate modules; a corpus holds plain text.

WMT14 English–German (the paper's data, Sec. 6.2 "standard data setups", Ott et al. 2018): six plain text files,
one sentence a line, line i of ``.en`` translated by line i of ``.de``:
``train.en train.de`` (WMT14's Europarl v7, Common Crawl and News Commentary v9, about 4.5 M pairs),
``valid.en valid.de`` (newstest2013) and ``test.en test.de`` (newstest2014), untokenised, so that BLEU is
sacreBLEU's on detokenised text. They are read as given (each line stripped of surrounding whitespace). fairseq's
``prepare-wmt14en2de.sh`` leaves these names in its ``tmp/`` folder before BPE, but Moses-tokenised, and its
``valid`` is every 100th training line rather than newstest2013: usable, but its BLEU is then on tokenised
references.

The Bible (``bible_en_es``), in the public domain on both sides: the World English Bible (SWORD module
``engWEB2015eb``, Debian ``sword-text-web``) and the Reina-Valera 1909 (``spaRV1909eb``, ``sword-text-sparv``),
printed by ``diatheke -b MODULE -l en -k Gen-Rev`` (Debian ``diatheke``) one verse a line as ``Book C:V: text``
in the module's OSIS markup. Extraction takes about 12 s (both modules, one CPU core); the aligned and split
pairs are cached under ``.cache/rfwp/corpora`` (``cache_dir``), in a JSON file whose name digests this module's
source and the modules' SWORD configuration files (which carry their versions), so an edit of either prepares
the corpus anew.

- markup (``strip_markup``): Strong's numbers and the other tags (``<w savlm=...>``, poetry lines, quotes,
  paragraphs) are removed and their words kept; footnotes (``<note>``) and the speaker labels of the Song of
  Solomon (``<speaker>``) are removed with their words; the WEB's glossary, which diatheke appends to Rev 22:21, is
  cut. The WEB module lost the space between 107 pairs of adjacent tagged words ("God</w><w ...>created"): a
  space goes back there.
- psalm titles: the RV prints a psalm's title as the start of its verse 1, the WEB as a title before it, which
  diatheke repeats before every later verse up to the next title. We add the title to the verse where it is
  new (its markup differs from the previous verse's), so both verse 1s hold it.
- alignment by reference (book, chapter, verse), ``align``: verses only one module has are dropped (the WEB's
  deuterocanonical books and two verses its versification adds, 6,689 in all), and so are the 25 verses that
  one module leaves empty. An empty verse marks where the two numberings differ: its words are merged into the
  verse before (RV 2 Sam 20:25 holds 20:26), or begin the next chapter and shift all its verses, where the RV
  keeps the Hebrew chapter division (Num 13, Job 39, Jonah 2), or are left out as a later addition (the WEB's
  Acts 8:37). So a chapter with an empty verse is dropped whole, and so is the chapter after one that ends in
  an empty verse: 28 chapters, 733 more verses. Differences that leave no empty verse stay: verses divided
  otherwise within a chapter (Judg 14:19-20, 1 Kgs 22:43-44), the RV's notes at the end of an epistle ("La
  primera á los Corintios fué enviada..."), words moved to another chapter (the WEB's Rom 14:23 holds the
  doxology of the RV's 16:25-27). 28 of the 30,344 pairs have one side under 0.45 or over 2.2 times the other's
  length in words, most of them such differences.
- splits by whole chapters, ``split_of``: a chapter is in valid if the SHA-256 of ``"Book C"`` (diatheke's
  English book name) is 0 modulo ``HELD_OUT`` = 30, in test if it is 1, else in training; a fixed rule that
  spreads the held-out chapters over the whole Bible and keeps every verse of a chapter in one split.
  Of the 30,344 pairs, 963 are in valid and 762 in test (WMT14's newstest sets have about 3,000 each).

The text is kept as the modules print it, typography included: curly quotes, the RV's accents of 1909 ("á",
"fué"), and its capitalised first word of a chapter ("EN el principio").
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from rfwp.io import atomic_write
from rfwp.tasks import generated
from rfwp.tasks.translation import subwords
from rfwp.train.runs import REPO_ROOT

CORPORA = ("bible_en_es", "wmt14_en_de")
SPLITS = generated.SPLITS

WMT14_LANGUAGES = ("en", "de")
WMT14_FILES = tuple(f"{split}.{language}" for split in SPLITS for language in WMT14_LANGUAGES)
WMT14_URL = "https://www.statmt.org/wmt14/translation-task.html"
# WMT14 En-De as the papers use it, beside which ``statistics`` prints a corpus; the sizes of the newstest sets,
# which the papers do not state, are those of the WMT14 release.
WMT14_STATISTICS = {
    "train_pairs": (4_500_000, "Vaswani et al. (2017), Sec. 5.1: about 4.5 million"),
    "valid_pairs": (3_000, "newstest2013, the development set of Vaswani et al. (2017), Sec. 6.2"),
    "test_pairs": (3_003, "newstest2014, the test set of Vaswani et al. (2017), Table 2"),
    "vocabulary": (32_000, "ICML 2021 App. E: 32 K BPE units"),
}

BIBLE_MODULES = {"en": "engWEB2015eb", "es": "spaRV1909eb"}
BIBLE_PACKAGES = "diatheke sword-text-web sword-text-sparv"
# Debian's SWORD packages put their modules' configuration files here (SWORD's system DataPath).
SWORD_CONFIGURATIONS = Path("/usr/share/sword/mods.d")
HELD_OUT = 30

# A verse line of diatheke's output: the markup diatheke prints before it (a psalm's title, poetry tags), the
# reference, then the verse's text; and the line diatheke closes with, the module's name in parentheses.
VERSE_LINE = re.compile(r"(?P<before>(?:<title[^>]*>.*?</title>|<[^>]*>|\s)*)"
                        r"(?P<book>[^<>:]+?) (?P<chapter>\d+):(?P<verse>\d+):(?P<text>.*)")
CLOSING_LINE = re.compile(r"\(\w+\)")
TITLE = re.compile(r"<title[^>]*>(.*?)</title>")
BACK_MATTER = re.compile(r'<div [^>]*type="(?:glossary|introduction)".*')
REMOVED_WITH_WORDS = re.compile(r"<(note|speaker)\b[^>]*>.*?</\1>")
TAG = re.compile(r"<[^>]*>")

Reference = tuple[str, int, int]   # book, chapter, verse


@dataclass(frozen=True)
class ParallelText:
    """Sentence pairs: ``target[i]`` translates ``source[i]``."""
    source: tuple[str, ...]
    target: tuple[str, ...]

    def __post_init__(self):
        if len(self.source) != len(self.target):
            raise ValueError(f"a parallel text needs as many targets as sources; got {len(self.source)} sources "
                             f"and {len(self.target)} targets")

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A parallel corpus as text, translating ``languages[0]`` into ``languages[1]``; ``dropped`` counts the
    pairs left out in preparing it, by reason (the Bible's alignment; nothing for WMT14)."""
    name: str
    languages: tuple[str, str]
    train: ParallelText
    valid: ParallelText
    test: ParallelText
    dropped: dict[str, int]


def load(name: str = "bible_en_es", data_dir: str | Path | None = None,
         cache_dir: str | Path | None = None) -> Corpus:
    """Corpus ``name`` (one of CORPORA). The Bible is extracted once and then read from ``cache_dir``;
    ``data_dir`` is the folder of WMT14's six files, read as they are on every load (they are the prepared
    text)."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    if name == "wmt14_en_de":
        return wmt14(wmt14_files(data_dir))
    if data_dir is not None:
        raise ValueError("the bible_en_es corpus is embedded (read with diatheke) and takes no data directory; "
                         "a data directory is for wmt14_en_de")
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for module in BIBLE_MODULES.values():
        configuration = SWORD_CONFIGURATIONS / f"{module}.conf"
        digest.update(configuration.read_bytes() if configuration.is_file() else module.encode())
    path = Path(cache_dir or REPO_ROOT / ".cache" / "rfwp" / "corpora") / f"{name}-{digest.hexdigest()[:16]}.json"
    return cached(path, extract_bible)


def cached(path: Path, make: Callable[[], Corpus]) -> Corpus:
    """The corpus saved at ``path``, else ``make()`` saved there (through a temporary file moved into place)."""
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        splits = {split: ParallelText(tuple(saved[split]["source"]), tuple(saved[split]["target"]))
                  for split in SPLITS}
        return Corpus(saved["name"], tuple(saved["languages"]), **splits, dropped=saved["dropped"])
    corpus = make()
    saved = {"name": corpus.name, "languages": corpus.languages, "dropped": corpus.dropped,
             **{split: {"source": getattr(corpus, split).source, "target": getattr(corpus, split).target}
                for split in SPLITS}}
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(saved, ensure_ascii=False), encoding="utf-8"))
    return corpus


def wmt14_files(data_dir: str | Path | None) -> dict[str, Path]:
    """The paths of WMT14's six files in ``data_dir`` by name, or the one-line error that says what they are
    and where to get them."""
    files = {name: Path(data_dir or "") / name for name in WMT14_FILES}
    missing = [name for name, path in files.items() if not path.is_file()]
    if data_dir is None or missing:
        where = "no data directory was given" if data_dir is None else f"{data_dir} lacks {', '.join(missing)}"
        raise ValueError(f"wmt14_en_de needs a directory with {', '.join(WMT14_FILES)} ({where}): plain untokenised "
                         f"text, one sentence a line, training = WMT14's Europarl v7 + Common Crawl + News "
                         f"Commentary v9, valid = newstest2013, test = newstest2014, all published at {WMT14_URL}; "
                         f"pass the folder as data_dir (--data-dir)")
    return files


def wmt14(files: dict[str, Path]) -> Corpus:
    """WMT14 English–German from its six files, each line stripped of surrounding whitespace."""
    splits = {}
    for split in SPLITS:
        source, target = (read_lines(files[f"{split}.{language}"]) for language in WMT14_LANGUAGES)
        if len(source) != len(target):
            raise ValueError(f"wmt14_en_de: {split}.en has {len(source)} lines but {split}.de has {len(target)}; "
                             f"line i of one must translate line i of the other")
        splits[split] = ParallelText(source, target)
    return Corpus("wmt14_en_de", WMT14_LANGUAGES, **splits, dropped={})


def read_lines(path: Path) -> tuple[str, ...]:
    # Lines end at "\n" only, as Moses' scripts read them: a lone carriage return inside a sentence stays.
    with open(path, encoding="utf-8", newline="\n") as file:
        return tuple(line.strip() for line in file)


def check_diatheke() -> None:
    """A one-line error unless diatheke and both Bible modules are installed."""
    if shutil.which("diatheke") is None:
        raise FileNotFoundError(f"the bible_en_es corpus is read with diatheke, which is not installed: "
                                f"apt-get install {BIBLE_PACKAGES}")
    installed = subprocess.run(["diatheke", "-b", "system", "-k", "modulelistnames"], capture_output=True,
                               text=True, check=True).stdout.split()
    missing = [module for module in BIBLE_MODULES.values() if module not in installed]
    if missing:
        raise FileNotFoundError(f"the SWORD modules {', '.join(missing)} of the bible_en_es corpus are not "
                                f"installed: apt-get install {BIBLE_PACKAGES}")


def extract_bible() -> Corpus:
    """The bible_en_es corpus, extracted with diatheke."""
    check_diatheke()
    return bible(*(diatheke(module) for module in BIBLE_MODULES.values()))


def diatheke(module: str) -> str:
    """The whole of a SWORD Bible module as diatheke prints it, one verse a line in the module's markup, book
    names in English whatever the user's locale (they key the split)."""
    return subprocess.run(["diatheke", "-b", module, "-l", "en", "-k", "Gen-Rev"], capture_output=True,
                          text=True, check=True).stdout


def verses(output: str) -> dict[Reference, str]:
    """The plain text of each verse of diatheke's ``output`` by reference, in order (module docstring)."""
    texts, before = {}, None
    for number, line in enumerate(output.split("\n"), 1):
        match = VERSE_LINE.fullmatch(line)
        if match is None:
            if line.strip() and not CLOSING_LINE.fullmatch(line):
                raise ValueError(f"line {number} of diatheke's output is not a verse: {line[:80]!r}")
            continue
        # A title is new where the markup before the verse changes; diatheke repeats it otherwise.
        titles = TITLE.findall(match["before"]) if match["before"] != before else []
        before = match["before"]
        reference = (match["book"], int(match["chapter"]), int(match["verse"]))
        texts[reference] = strip_markup(" ".join([*titles, match["text"]]))
    return texts


def strip_markup(text: str) -> str:
    """A verse's words without the module's markup, on one line with single spaces (module docstring)."""
    text = BACK_MATTER.sub("", text)
    text = REMOVED_WITH_WORDS.sub(" ", text)
    text = text.replace("</w><w", "</w> <w")   # two words the module ran together
    return " ".join(TAG.sub("", text).split())


def align(source: dict[Reference, str],
          target: dict[Reference, str]) -> tuple[dict[Reference, tuple[str, str]], dict[str, int]]:
    """The verse pairs of two texts that can be trusted to translate each other, in the source's order, and
    the number of verses dropped by reason (module docstring)."""
    shared = [reference for reference in source if reference in target]
    empty = {reference for reference in shared if not source[reference] or not target[reference]}
    last_verse = Counter()
    for book, chapter, verse in shared:
        last_verse[book, chapter] = max(last_verse[book, chapter], verse)
    mismatched = {(book, chapter) for book, chapter, _ in empty}
    mismatched |= {(book, chapter + 1) for book, chapter, verse in empty if verse == last_verse[book, chapter]}
    pairs = {reference: (source[reference], target[reference]) for reference in shared
             if reference[:2] not in mismatched}
    dropped = {"source_only": len(source) - len(shared), "target_only": len(target) - len(shared),
               "empty": len(empty), "mismatched_chapters": len(shared) - len(empty) - len(pairs)}
    return pairs, dropped


def split_of(book: str, chapter: int) -> str:
    """The split of a chapter: valid, test or train by the SHA-256 of "Book C" (module docstring)."""
    bucket = int(hashlib.sha256(f"{book} {chapter}".encode()).hexdigest(), 16) % HELD_OUT
    return {0: "valid", 1: "test"}.get(bucket, "train")


def bible(english: str, spanish: str) -> Corpus:
    """The bible_en_es corpus from diatheke's output of the two modules."""
    pairs, dropped = align(verses(english), verses(spanish))
    splits = {split: ([], []) for split in SPLITS}
    for (book, chapter, _), (source, target) in pairs.items():
        sources, targets = splits[split_of(book, chapter)]
        sources.append(source)
        targets.append(target)
    texts = {split: ParallelText(tuple(sources), tuple(targets)) for split, (sources, targets) in splits.items()}
    return Corpus("bible_en_es", ("en", "es"), **texts, dropped=dropped)


def statistics(corpus: Corpus, vocabulary: subwords.Subwords | None = None) -> pd.DataFrame:
    """Pairs and whitespace-separated words per split and side, the pairs dropped by reason, and, given the
    corpus's subword ``vocabulary``, subword tokens per split and side and the vocabulary size; beside what the
    papers state of WMT14 (``WMT14_STATISTICS``)."""
    ours = {}
    for split in SPLITS:
        text = getattr(corpus, split)
        ours[f"{split}_pairs"] = len(text)
        for side, sentences in (("source", text.source), ("target", text.target)):
            ours[f"{split}_{side}_words"] = sum(len(sentence.split()) for sentence in sentences)
            if vocabulary is not None:
                ours[f"{split}_{side}_subwords"] = sum(map(len, vocabulary.encode(sentences)))
    if vocabulary is not None:
        ours["vocabulary"] = len(vocabulary)
    ours.update({f"dropped_{reason}": count for reason, count in corpus.dropped.items()})
    wmt = pd.DataFrame(WMT14_STATISTICS, index=["WMT14", "WMT14 source"]).T
    return pd.DataFrame({corpus.name: ours}).join(wmt).map(generated.cell).rename_axis("statistic")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare a translation corpus and its subword vocabulary and "
                                                 "print their statistics beside WMT14's.")
    parser.add_argument("--corpus", default="bible_en_es", help=f"one of {', '.join(CORPORA)} (default: bible_en_es)")
    parser.add_argument("--data-dir", type=Path, help="wmt14_en_de: the folder of its six files "
                                                      f"({', '.join(WMT14_FILES)})")
    parser.add_argument("--cache-dir", type=Path,
                        help="where the prepared corpus and vocabulary are cached (default: .cache/rfwp/corpora)")
    parser.add_argument("--vocabulary-size", type=int,
                        help="subword vocabulary size (default: the corpus's, subwords.VOCABULARY_SIZES)")
    args = parser.parse_args(argv)
    try:
        corpus = load(args.corpus, args.data_dir, args.cache_dir)
        size = args.vocabulary_size or subwords.VOCABULARY_SIZES[corpus.name]
        vocabulary = subwords.learn(corpus, size, args.cache_dir)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    print(statistics(corpus, vocabulary).to_string())


if __name__ == "__main__":
    main()
