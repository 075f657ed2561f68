"""Machine translation, ICML 2021 Sec. 6.2 and App. E (WMT14 English to German, BLEU).

Modules: ``corpus`` (WMT14 from a directory, the embedded English–Spanish Bible, aligned by verse), ``subwords``
(the joint SentencePiece BPE vocabulary learnt on the training split), ``bleu`` (sacreBLEU on detokenised text).
The model: ``model`` (the Transformer "big" with softmax or linear attention, its loss), ``decoding`` (beam search).
The runs: ``presets`` (scales, Table 6), ``trainer`` (selected on valid BLEU), ``sweeps``, ``tables``, ``claims`` (C11).
"""
