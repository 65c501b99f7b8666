#!/usr/bin/env python3
"""Writes the SentencePiece tokenizer.model fixtures in tests/models/fixtures/spm/: small models
trained here by Google's `sentencepiece` (the oracle), deterministically (one thread, fixed
corpus), and what `sentencepiece` itself makes of a test corpus with each.

- bpe.model: BPE, 1000 pieces, byte fallback, identity normalization, a dummy prefix and no
  whitespace folding: how Llama 2's and Mistral's tokenizer.model are set up.
- bpe-no-prefix.model: the same at 600 pieces without the dummy prefix (as Yi's).
- unigram.model: a 600-piece unigram model, which the runtime refuses by name.

expected.json holds, for each BPE model, its settings and, for every corpus string (prose, code,
whitespace runs, digits, CJK, emoji with ZWJ sequences, accented and right-to-left scripts,
look-alikes of special tokens), [text, ids, decoded]: `encode` without BOS and `decode` of those
ids. SentencePieceModel in hf_folder_test loads each model from a Hugging Face folder and must
agree; it needs no Python.

    pip install sentencepiece==0.2.3   (scripts/python-deps)
    python3 tests/models/sentencepiece_fixtures.py [--out tests/models/fixtures/spm]
"""

import argparse
import io
import json
import pathlib

import sentencepiece as spm

from sentencepiece_reference import make_corpus, training_lines

MODELS = {
    "bpe": dict(model_type="bpe", vocab_size=1000, add_dummy_prefix=True),
    "bpe-no-prefix": dict(model_type="bpe", vocab_size=600, add_dummy_prefix=False),
    "unigram": dict(model_type="unigram", vocab_size=600, add_dummy_prefix=True),
}


def train(model_type, vocab_size, add_dummy_prefix):
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_lines()), model_writer=out, model_type=model_type,
        vocab_size=vocab_size, byte_fallback=True, normalization_rule_name="identity",
        add_dummy_prefix=add_dummy_prefix, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, split_digits=True, split_by_unicode_script=False,
        character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        minloglevel=2)
    return out.getvalue()


def corpus():
    # The fixed strings of the reference corpus and the first 120 generated ones: every kind of
    # text at a size that keeps expected.json small.
    texts = make_corpus()
    return texts[:160]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "fixtures" / "spm"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    expected = {"sentencepiece": spm.__version__, "models": {}}
    texts = corpus()
    for name, settings in MODELS.items():
        proto = train(**settings)
        (out / f"{name}.model").write_bytes(proto)
        if settings["model_type"] != "bpe":
            continue
        sp = spm.SentencePieceProcessor(model_proto=proto)
        rows = []
        for text in texts:
            ids = sp.encode(text)
            decoded = sp.decode(ids)
            if decoded != text and "\u2581" not in text and settings["add_dummy_prefix"]:
                raise RuntimeError(f"{name}: sentencepiece does not round-trip {text!r}")
            rows.append([text, ids, decoded])
        expected["models"][name] = {
            "settings": settings, "num_pieces": sp.get_piece_size(), "bos_id": sp.bos_id(),
            "eos_id": sp.eos_id(), "unk_id": sp.unk_id(), "tokenized": rows,
        }
        print(f"{name}: {len(proto)} bytes, {sp.get_piece_size()} pieces, {len(rows)} strings")
    with open(out / "expected.json", "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
