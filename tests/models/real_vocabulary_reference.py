#!/usr/bin/env python3
"""Compares Aegaeon's SentencePiece ("llama") tokenizer with Google's `sentencepiece` on real
vocabularies: Mistral 7B v0.1's tokenizer.model (32,000 pieces) and Mistral's instruct
tokenizers v3 and v7 (32,768 pieces, with [INST], tool and image control tokens), as PyPI's
mistral-common ships them (scripts/fetch-vocabularies puts them in models/vocabularies/).

Each vocabulary goes into a GGUF as llama.cpp's converter writes it; the corpus of
sentencepiece_reference.py (prose, code, whitespace runs, digits, CJK, emoji with ZWJ, accented
and RTL scripts, special-token look-alikes) is encoded by both, plainly and with the control
tokens' texts read as those tokens, and every id list and decoded text must agree. Each file is
also read as a Hugging Face folder's tokenizer.model (models/hf/sentencepiece_proto.cpp) and
must agree alike.

Exit status: 0 all agree, 1 a difference (printed), 77 skipped (vocabularies or packages missing).
Needs: scripts/fetch-vocabularies; pip install sentencepiece gguf numpy (scripts/python-deps).
"""

import argparse
import os
import sys
import tempfile

import sentencepiece_reference as ref

VOCABULARIES = ("mistral-v1.model", "mistral-v3.model", "mistral-v7.model")

# What a Mistral prompt looks like, with the control tokens' texts in it.
INSTRUCT = [
    "<s>[INST] What is 2+2? [/INST] 4</s>[INST] and 3+3? [/INST]",
    "[INST]no space[/INST]answer</s>",
    "[AVAILABLE_TOOLS] [{\"type\": \"function\"}][/AVAILABLE_TOOLS][INST] weather? [/INST]",
    "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}}]</s>[TOOL_RESULTS] {\"t\": 21} [/TOOL_RESULTS]",
    "[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST]", "[IMG][IMG_BREAK][IMG_END]",
    "[INST [/INST] [inst] [ INST ] [/INST", "[control_8] [control_99]",
]


def check(tool, path, corpus):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=path)
    n = sp.get_piece_size()
    name = os.path.basename(path)
    with tempfile.TemporaryDirectory() as workdir:
        gguf_path = os.path.join(workdir, "vocab.gguf")
        ref.write_gguf(sp, gguf_path)
        bad = ref.compare(f"{name} plain", sp, corpus, ref.run_tool(tool, gguf_path, corpus), None)
        specials = sorted(((sp.id_to_piece(i), i) for i in range(n)
                           if sp.is_control(i) or sp.is_unknown(i)),
                          key=lambda t: (-len(t[0].encode()), t[1]))
        special_corpus = INSTRUCT + corpus[:120]
        bad += ref.compare(f"{name} special", sp, special_corpus,
                           ref.run_tool(tool, gguf_path, special_corpus, "--parse-special"),
                           specials)
        # The file itself as a Hugging Face folder's tokenizer.model, read by our own reader.
        folder = os.path.join(workdir, "hf")
        ref.write_folder(sp, folder)
        bad += ref.compare(f"{name} folder", sp, corpus, ref.run_tool(tool, folder, corpus), None)
        bad += ref.compare(f"{name} folder special", sp, special_corpus,
                           ref.run_tool(tool, folder, special_corpus, "--parse-special"),
                           specials)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, help="path of the tokenize_tool executable")
    ap.add_argument("--dir", required=True, help="folder with the vocabularies")
    args = ap.parse_args()
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401
        import sentencepiece  # noqa: F401
    except ImportError as e:
        print(f"SKIP: Python package '{e.name}' is missing; run scripts/python-deps "
              "(or: python3 -m pip install sentencepiece gguf numpy)")
        return ref.SKIP
    paths = [os.path.join(args.dir, v) for v in VOCABULARIES]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        print(f"SKIP: {', '.join(missing)} missing; run scripts/fetch-vocabularies")
        return ref.SKIP
    corpus = ref.make_corpus()
    bad = sum(check(args.tool, p, corpus) for p in paths)
    if bad:
        print(f"FAIL: {bad} difference(s) from sentencepiece")
        return 1
    print("OK: identical to sentencepiece on every real vocabulary")
    return 0


if __name__ == "__main__":
    sys.exit(main())
