#!/usr/bin/env python3
"""Compares Aegaeon's tokenizer with an independent one built from the same GGUF file.

The reference is Hugging Face `tokenizers`: a BPE model over the GGUF's vocabulary and merges,
pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
use_regex=True)] (what SmolLM2's tokenizer.json says) and a ByteLevel decoder. A corpus of a few
hundred varied strings is encoded by both (through tests/models/tokenize_tool) and every id list
must agree; so must the decoded text. The same vocabulary is also run under the llama3 and qwen2
pre-tokenizers (a GGUF naming them, against HF with their tokenizer.json's Split). With jinja2 installed, the model's chat template rendered by
Jinja is compared with chat_template::render as well.

Exit status: 0 all agree, 1 a difference (printed), 77 skipped (model file or packages missing).
Needs: pip install gguf numpy tokenizers (jinja2 optional).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

from reference_data import LLAMA2_TEMPLATE, LLAMA3_TEMPLATE, MISTRAL_TEMPLATE, byte_symbols

SKIP = 77


def load_vocab(path):
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(key):
        f = reader.fields.get(key)
        if f is None:
            return None
        if f.types[0].name == "ARRAY":
            if f.types[-1].name == "STRING":
                return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            return [int(f.parts[i][0]) for i in f.data]
        if f.types[0].name == "STRING":
            return bytes(f.parts[f.data[0]]).decode("utf-8")
        return f.parts[f.data[0]][0]

    return {
        "tokens": field("tokenizer.ggml.tokens"),
        "types": field("tokenizer.ggml.token_type"),
        "merges": field("tokenizer.ggml.merges"),
        "pre": field("tokenizer.ggml.pre"),
        "chat_template": field("tokenizer.chat_template"),
    }


def split_then_bytes(digits):
    """Llama 3's (digits "{1,3}") or Qwen2's (digits "") pre-tokenizer as their tokenizer.json
    describes it."""
    from tokenizers import Regex, pre_tokenizers

    expr = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}" + digits +
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(expr), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def build_reference(vocab, with_specials, pre_tokenizer=None):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    ids = {t: i for i, t in enumerate(vocab["tokens"])}
    merges = []
    for m in vocab["merges"]:
        cut = m.find(" ", 1)  # the first space after position 0, as llama.cpp splits
        merges.append((m[:cut], m[cut + 1:]))
    tok = Tokenizer(models.BPE(vocab=ids, merges=merges))
    tok.pre_tokenizer = pre_tokenizer or pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    if with_specials:
        specials = [t for t, ty in zip(vocab["tokens"], vocab["types"]) if ty == 3]
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def make_corpus(seed=1234):
    fixed = [
        "", " ", "  ", "\n", "\n\n", "\t", "Hello", "Hello, world!", "Hello world! 123",
        "The capital of France is", "The quick brown fox jumps over the lazy dog.",
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        "12345", "3.14159", "1,000,000", "$1,234.56", "2024-01-31T12:34:56Z", "0x1F 0b1010 1e-9",
        "a   b", "a b  c   d    e", "trailing   ", "   leading", "  multiple   spaces",
        "tab\tseparated\tvalues", "line1\nline2\r\nline3\rline4", "\n\n\nparagraph\n\n",
        " \n \n ", "\t\t  \n", "mixed \t\n whitespace \u00a0nbsp \u2003emspace \u3000ideographic",
        "I'm", "don't", "we'll", "they're", "I've", "she'd", "it's", "'s 't 're", "O'Neil's",
        "Don'T SHOUT'S", "''quoted''", "\"double\" 'single' `back`",
        "Café déjà vu.", "naïve coöperate façade", "Ελληνικά γράμματα", "Русский текст, привет!",
        "עברית שלום", "العربية مرحبا", "हिन्दी नमस्ते", "தமிழ்", "ภาษาไทย สวัสดี",
        "中文字符测试，你好世界。", "日本語のテキスト、こんにちは。", "한국어 텍스트 안녕하세요",
        "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷", "❤️ ✨ ☕ ⚡", "math: ∑ ∫ √ ∞ ≈ ≠ ≤ ≥ π",
        "arrows ← → ↑ ↓ ⇒", "currency € £ ¥ ₹ ₿", "fractions ½ ¼ ¾ ² ³", "roman Ⅻ ⅻ",
        "digits ١٢٣ ۴۵۶ ७८९ ๑๒๓", "full width ＡＢＣ１２３", "combining e\u0301 a\u0308 n\u0303",
        "zero\u200bwidth\u200cjoiner\u200d", "soft\u00adhyphen", "bidi \u202eevil\u202c",
        "def f(x):\n    return x ** 2\n", "int main() { return 0; }",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "<div class=\"x\">&amp;</div>", "{\"key\": [1, 2, 3], \"v\": null}",
        "SELECT * FROM t WHERE id = 42;", "https://example.com/path?q=1&r=2#frag",
        "user@example.com", "C:\\Windows\\System32", "~/.bashrc && ls -la | grep x",
        "!!!???...,,,;;;:::", "---===+++***", "a-b_c.d/e\\f", "(((nested)))", "[[]]{{}}<<>>",
        "<|im_start|>user\nHi<|im_end|>", "<|endoftext|>", "<|im_start|", "<repo_name>x",
        "A" * 300, "ab" * 200, " " * 100 + "x", "\n" * 50, "9" * 64, "😀" * 20,
        "Mr. Smith's 3rd car (a '97 Ford) costs $4,500.",
    ]
    rng = random.Random(seed)
    words = [w for s in fixed[10:80] for w in s.split()] + [
        "the", "of", "and", "token", "izer", "Aegaeon", "GPU", "serving", "latency", "über",
        "straße", "éclair", "niño", "Zürich", "københavn", "データ", "模型", "ошибка",
    ]
    seps = [" ", "  ", "\n", "\t", ", ", ". ", " - ", "\n\n", "", "   ", " \n", "'s ", "'ll "]
    generated = []
    for _ in range(260):
        n = rng.randint(1, 12)
        parts = []
        for _ in range(n):
            r = rng.random()
            if r < 0.6:
                parts.append(rng.choice(words))
            elif r < 0.75:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
            elif r < 0.85:
                parts.append(rng.choice("!@#$%^&*()_+-=[]{};:'\",.<>/?\\|`~"))
            else:
                parts.append(chr(rng.choice([
                    rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x24F), rng.randint(0x370, 0x3FF),
                    rng.randint(0x400, 0x4FF), rng.randint(0x4E00, 0x9FA5),
                    rng.randint(0x3040, 0x30FF), rng.randint(0x1F600, 0x1F64F),
                    rng.randint(0x2000, 0x206F), rng.randint(0x2190, 0x22FF),
                ])))
            parts.append(rng.choice(seps))
        generated.append("".join(parts))
    # Random assigned code points from all of Unicode, between runs of assorted white space.
    import unicodedata
    spaces = [" ", "  ", "\n", "\t", "\u0085", "\u00a0", "\u2002", "\u3000", " \n"]
    for _ in range(150):
        chars = []
        while len(chars) < rng.randint(1, 24):
            cp = rng.choice([rng.randint(0x21, 0x2FF), rng.randint(0x300, 0x2FFF),
                             rng.randint(0x3000, 0xFFFD), rng.randint(0x10000, 0x1FAFF),
                             rng.randint(0x20000, 0x2FFFF)])
            c = chr(cp)
            if unicodedata.category(c) in ("Cs", "Cn"):
                continue
            chars.append(c if rng.random() < 0.8 else rng.choice(spaces))
        generated.append("".join(chars))
    return fixed + generated


def run_tool(tool, model, payload, *flags):
    args = [tool, "--model", model, *flags] if model else [tool, *flags]
    proc = subprocess.run(args, input=json.dumps(payload),
                          capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def compare(label, corpus, ours, ref_tok, vocab, parse_special):
    bad = 0
    for text, got in zip(corpus, ours):
        want = ref_tok.encode(text, add_special_tokens=False).ids
        ref_decoded = ref_tok.decode(want, skip_special_tokens=False)
        if got["ids"] != want or got["decoded"] != ref_decoded:
            bad += 1
            if bad <= 10:
                print(f"[{label}] MISMATCH for {text!r}")
                print(f"  aeg: {got['ids']} -> {[vocab['tokens'][i] for i in got['ids']]}")
                print(f"  ref: {want} -> {[vocab['tokens'][i] for i in want]}")
                if got["decoded"] != ref_decoded:
                    print(f"  decoded: aeg {got['decoded']!r} ref {ref_decoded!r}")
    total_tokens = sum(len(g["ids"]) for g in ours)
    print(f"[{label}] {len(corpus) - bad}/{len(corpus)} strings identical "
          f"({total_tokens} tokens)")
    return bad


def compare_splits(tool, corpus):
    """The pre-tokenizers alone: each against the HF pre-tokenizer it models (for llama3 and
    qwen2, the Split and ByteLevel of their models' tokenizer.json)."""
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)

    sets = {
        "smollm": pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]),
        "gpt2": byte_level,
        "llama3": split_then_bytes("{1,3}"),
        "qwen2": split_then_bytes(""),
    }
    # ByteLevel reports pieces in its byte-level alphabet; map them back to text.
    to_byte = {c: b for b, c in enumerate(byte_symbols())}
    bad = 0
    for name, ref in sets.items():
        ours = run_tool(tool, None, corpus, "--split", name)
        for text, got in zip(corpus, ours):
            want = [bytes(to_byte[ch] for ch in p).decode("utf-8") for p, _ in
                    ref.pre_tokenize_str(text)]
            if got != want:
                bad += 1
                if bad <= 10:
                    print(f"[split {name}] MISMATCH for {text!r}\n  aeg: {got}\n  ref: {want}")
        print(f"[split {name}] {len(corpus)} strings compared")
    return bad


def compare_other_pre(tool, vocab, corpus, workdir):
    """The whole tokenizer under the llama3 and qwen2 pre-tokenizers: the same vocabulary and
    merges in a GGUF that names the other pre-tokenizer, against HF with theirs."""
    from gguf import GGUFWriter

    bad = 0
    for pre, digits in (("llama3", "{1,3}"), ("qwen2", "")):
        path = os.path.join(workdir, f"vocab-{pre}.gguf")
        w = GGUFWriter(path, "llama")
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(vocab["tokens"])
        w.add_token_types(vocab["types"])
        w.add_token_merges(vocab["merges"])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        ref = build_reference(vocab, False, split_then_bytes(digits))
        bad += compare(pre, corpus, run_tool(tool, path, corpus), ref, vocab, False)
    return bad


def compare_chat(tool, model, vocab, workdir):
    try:
        import jinja2
    except ImportError:
        print("[chat] jinja2 not installed: chat template comparison skipped")
        return 0
    template = vocab["chat_template"]
    if not template:
        print("[chat] the model has no chat template: comparison skipped")
        return 0
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    sys_msg = {"role": "system", "content": "Be brief."}
    user = {"role": "user", "content": "Hi"}
    asst = {"role": "assistant", "content": "Hello! How can I help?"}
    user2 = {"role": "user", "content": "Tell me a joke\nabout 'quotes' and \"more\"."}
    convs = []
    for msgs in ([], [user], [sys_msg, user], [user, asst, user2], [sys_msg, user, asst, user2],
                 [asst], [user, sys_msg], [{"role": "tool", "content": "{\"x\": 1}"}]):
        for gen in (True, False):
            convs.append({"messages": msgs, "add_generation_prompt": gen})
    convs.append({"messages": [user2, {"role": "user", "content": "  \n"}, asst],
                  "add_generation_prompt": True})
    bad = 0
    for label, text, flags, tokens in (
            ("chat", template, (), {}),
            ("chat llama3", LLAMA3_TEMPLATE, ("--template",), {"bos_token": "<|begin_of_text|>"}),
            ("chat llama2", LLAMA2_TEMPLATE, ("--template",),
             {"bos_token": "<s>", "eos_token": "</s>"}),
            ("chat mistral", MISTRAL_TEMPLATE, ("--template",),
             {"bos_token": "<s>", "eos_token": "</s>"})):
        tmpl = env.from_string(text)
        args = ["--chat"]
        if flags:
            path = os.path.join(workdir, label.replace(" ", "-") + ".jinja")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            args += [flags[0], path]
        ours = run_tool(tool, model, convs, *args)
        compared = 0
        for conv, got in zip(convs, ours):
            try:
                want = tmpl.render(messages=conv["messages"],
                                   add_generation_prompt=conv["add_generation_prompt"],
                                   raise_exception=raise_exception, **tokens)
            except (TemplateRefused, jinja2.exceptions.UndefinedError):
                continue  # the template refuses the conversation (no messages, roles that do
                # not alternate)
            compared += 1
            if got != want:
                bad += 1
                print(f"[{label}] MISMATCH for {conv!r}\n  aeg: {got!r}\n  ref: {want!r}")
        print(f"[{label}] {compared} conversations compared")
    return bad


class TemplateRefused(Exception):
    pass


def raise_exception(message):
    raise TemplateRefused(message)




def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, help="path of the tokenize_tool executable")
    ap.add_argument("--model", required=True, help="path of the SmolLM2 GGUF file")
    args = ap.parse_args()

    if not os.path.exists(args.model):
        print(f"SKIP: {args.model} not found; run scripts/fetch-model to download it")
        return SKIP
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as e:
        print(f"SKIP: Python package '{e.name}' is missing; "
              "run: python3 -m pip install gguf numpy tokenizers")
        return SKIP

    vocab = load_vocab(args.model)
    if vocab["pre"] != "smollm":
        print(f"SKIP: the reference models the 'smollm' pre-tokenizer, the file uses {vocab['pre']!r}")
        return SKIP

    corpus = make_corpus()
    plain = build_reference(vocab, with_specials=False)
    bad = compare("plain", corpus, run_tool(args.tool, args.model, corpus), plain, vocab, False)

    special_corpus = [
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "text<|endoftext|>more text", "<|im_end|><|im_end|>", "<|im_start|<|im_start|>>",
        "<repo_name>aegaeon<file_sep>main.cpp\nint x;<|endoftext|>", " <|im_end|> spaced ",
        "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
    ] + corpus[:100]
    with_specials = build_reference(vocab, with_specials=True)
    bad += compare("special", special_corpus,
                   run_tool(args.tool, args.model, special_corpus, "--parse-special"),
                   with_specials, vocab, True)
    bad += compare_splits(args.tool, corpus)
    with tempfile.TemporaryDirectory() as workdir:
        bad += compare_other_pre(args.tool, vocab, corpus, workdir)
        bad += compare_chat(args.tool, args.model, vocab, workdir)
    if bad:
        print(f"FAIL: {bad} difference(s) from the reference")
        return 1
    print("OK: identical to the Hugging Face reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
