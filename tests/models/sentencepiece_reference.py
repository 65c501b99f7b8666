#!/usr/bin/env python3
"""Compares Aegaeon's SentencePiece ("llama") tokenizer with Google's `sentencepiece`.

Two small SentencePiece BPE models (500 and 1000 pieces) are trained here, in about a second, on
generated lines of prose, markup, code, several scripts and emoji (byte_fallback on; identity
normalization, a dummy prefix and no whitespace folding, as Llama's tokenizer.model is set up
and as llama.cpp tokenizes).
Its pieces, scores and types go into a GGUF as llama.cpp's converter writes them (control for
<s> and </s>, unknown for <unk>, byte for <0xXX>, normal otherwise; add_space_prefix true). A
corpus of a few hundred strings is encoded by both (ours through tests/models/tokenize_tool) and
every id list must agree, and so must the decoded text, which must also be the input again.
The same model is also read from a Hugging Face folder that carries it as tokenizer.model (our
protobuf reader, models/hf/sentencepiece_proto.cpp) and must agree alike.

With --parse-special, <s>, </s> and <unk> written in the text are those tokens: the reference is
then llama.cpp's rule, built from `sentencepiece`: the text is cut at those tokens (longest
first) and each run between them encoded on its own, with its own dummy prefix.

Exit status: 0 all agree, 1 a difference (printed), 77 skipped (packages missing).
Needs: pip install sentencepiece gguf numpy (scripts/python-deps).
"""

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile

SKIP = 77

# llama.cpp's token types (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an which have not "
    "tokenizer token model serving latency throughput request batch prompt scheduler memory GPU "
    "kernel cache attention layer weights quantized inference engine stream decoder sampler "
    "über straße café naïve façade déjà Zürich København niño jalapeño coöperate "
    "Ελληνικά γράμματα Русский текст привет мир العربية مرحبا עברית שלום हिन्दी नमस्ते "
    "中文 字符 测试 你好 世界 模型 数据 日本語 テキスト こんにちは 한국어 텍스트 안녕하세요"
).split()
EMOJI = ["😀", "😃", "👍", "👍🏽", "🎉", "❤️", "✨", "🚀", "👨‍👩‍👧", "🇫🇷", "☕", "⚡"]
CODE = [
    "def f(x):", "    return x ** 2", "int main() {", "    return 0;", "}", "for (int i = 0; i < n; ++i) {",
    "\tsum += a[i];", "std::vector<int> v{1, 2, 3};", "if (a <= b && c != d) {", "x = y + 42",
    "<div class=\"box\">", "</div>", "<span>text</span>", "<strong>bold</strong>", "<sub>2</sub>",
    "<s>struck</s>", "{\"key\": [1, 2, 3], \"v\": null}", "SELECT * FROM t WHERE id = 7;",
    "#include <string>", "// comment", "/* block */", "import numpy as np", "print(f\"{x!r}\")",
]


def training_lines(seed=7):
    rng = random.Random(seed)
    lines = []
    for _ in range(6000):
        kind = rng.random()
        if kind < 0.55:
            n = rng.randint(3, 16)
            words = [rng.choice(WORDS) for _ in range(n)]
            if rng.random() < 0.3:
                words.insert(rng.randrange(len(words) + 1), rng.choice(EMOJI))
            if rng.random() < 0.3:
                words.append(str(rng.randint(0, 10 ** rng.randint(1, 6))))
            line = " ".join(words)
            line = line[0].upper() + line[1:] + rng.choice([".", "!", "?", ",", ":", ""])
        elif kind < 0.7:
            # Markup around <s> and </s>, which must stay plain text without --parse-special.
            tag = rng.choice(["s", "s", "span", "sub", "sup", "strong"])
            line = f"<{tag}>" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) + \
                f"</{tag}>"
        elif kind < 0.9:
            line = rng.choice(CODE)
            if rng.random() < 0.5:
                line = "    " * rng.randint(1, 2) + line
        else:
            line = "".join(rng.choice(EMOJI + WORDS[-20:] + [" ", "  "]) for _ in range(8))
        lines.append(line)
    return lines


def train(vocab_size=800):
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_lines()), model_writer=model, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        # Pieces across scripts ("span>", "▁<sub>") make for more merges to get right.
        split_digits=True, split_by_unicode_script=False, character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def token_type(sp, i):
    """As llama.cpp's convert_hf_to_gguf.py sets it from a tokenizer.model."""
    if sp.is_unknown(i):
        return UNKNOWN
    if sp.is_control(i):
        return CONTROL
    if sp.is_unused(i):
        return UNUSED
    if sp.is_byte(i):
        return BYTE
    return NORMAL


def write_gguf(sp, path):
    from gguf import GGUFWriter

    n = sp.get_piece_size()
    w = GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types([token_type(sp, i) for i in range(n)])
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_folder(sp, path):
    """A tiny llama Hugging Face folder whose tokenizer is the model's tokenizer.model (no
    tokenizer.json), as Llama 2 and Mistral folders come; zero weights, the tokenizer is what
    is compared."""
    import numpy as np

    n, dim, ffn, layer = sp.get_piece_size(), 64, 64, "model.layers.0."
    os.makedirs(path)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "hidden_size": dim, "intermediate_size": ffn, "num_attention_heads": 2,
              "num_key_value_heads": 1, "num_hidden_layers": 1, "rms_norm_eps": 1e-6,
              "max_position_embeddings": 64, "tie_word_embeddings": True, "vocab_size": n}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    shapes = {"model.embed_tokens.weight": (n, dim), "model.norm.weight": (dim,)}
    for name, shape in [("input_layernorm", (dim,)), ("post_attention_layernorm", (dim,)),
                        ("self_attn.q_proj", (dim, dim)), ("self_attn.k_proj", (dim // 2, dim)),
                        ("self_attn.v_proj", (dim // 2, dim)), ("self_attn.o_proj", (dim, dim)),
                        ("mlp.gate_proj", (ffn, dim)), ("mlp.up_proj", (ffn, dim)),
                        ("mlp.down_proj", (dim, ffn))]:
        shapes[layer + name + ".weight"] = shape
    header, data = {}, b""
    for name, shape in shapes.items():
        raw = np.zeros(shape, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)
    with open(os.path.join(path, "tokenizer.model"), "wb") as f:
        f.write(sp.serialized_model_proto())


def make_corpus(seed=1234):
    fixed = [
        "", " ", "  ", "   ", "\n", "\n\n", "\t", " \n ", "a", "A", "Hello", "Hello, world!",
        "hello world", " hello", "  hello", "hello ", "hello  ", "hello   world", " leading",
        "trailing ", "a b  c   d    e     f", "The quick brown fox jumps over the lazy dog.",
        "The tokenizer model serves the prompt with low latency.",
        "12345", "3.14159", "1,000,000", "$1,234.56", "2024-01-31T12:34:56Z", "0x1F 0b1010",
        "line1\nline2\r\nline3\rline4", "tab\tseparated\tvalues", "\n\n\nparagraph\n\n",
        "Café déjà vu.", "naïve coöperate façade", "über straße", "Ελληνικά γράμματα",
        "Русский текст, привет мир!", "עברית שלום", "العربية مرحبا", "हिन्दी नमस्ते",
        "中文字符测试，你好世界。", "日本語のテキスト、こんにちは。", "한국어 텍스트 안녕하세요",
        "emoji 😀😃 👍🏽 🎉", "👨‍👩‍👧 family", "🇫🇷 flag", "❤️ ✨ ☕ ⚡ 🚀",
        "unseen: ∑ ∫ √ ∞ ≈ ≠ ≤ ≥ π ½ ¾ € £ ¥ ₹ ₿", "rare 🦀🦖🧬 crab dino dna", "ÆØÅ æøå Þð",
        "combining e\u0301 a\u0308 n\u0303", "zero\u200bwidth\u200cjoiner\u200d", "nbsp\u00a0here",
        "ideographic\u3000space", "soft\u00adhyphen",
        "def f(x):\n    return x ** 2\n", "int main() {\n    return 0;\n}\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}", "std::vector<int> v{1, 2, 3};",
        "<div class=\"box\"><span>text</span></div>", "{\"key\": [1, 2, 3], \"v\": null}",
        "SELECT * FROM t WHERE id = 7;", "https://example.com/path?q=1&r=2#frag",
        "user@example.com", "C:\\Windows\\System32", "~/.bashrc && ls -la | grep x",
        "!!!???...,,,;;;:::", "---===+++***", "(((nested)))", "[[]]{{}}<<>>",
        # Special-token texts are plain text here (no --parse-special): neither side may turn
        # them into their tokens.
        "<s>", "</s>", "<unk>", "<s>hello</s>", "a</s>b", "<strong>x</strong> <s>y</s>",
        "<0x41> <0x0A>", "▁ already ▁escaped ▁▁", "a" * 200, "ab" * 100, " " * 40 + "x",
        "\n" * 20, "9" * 40, "😀" * 12, "Mr. Smith's 3rd car (a '97 Ford) costs $4,500.",
    ]
    rng = random.Random(seed)
    words = WORDS + ["token", "izer", "Aegaeon", "ошибка", "データ", "🦀", "∑", "<s>", "</s>"]
    seps = [" ", "  ", "\n", "\t", ", ", ". ", " - ", "\n\n", "", "   ", " \n"]
    generated = []
    for _ in range(250):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.55:
                parts.append(rng.choice(words))
            elif r < 0.65:
                parts.append(rng.choice(EMOJI))
            elif r < 0.75:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
            elif r < 0.85:
                parts.append(rng.choice("!@#$%^&*()_+-=[]{};:'\",.<>/?\\|`~"))
            else:
                parts.append(chr(rng.choice([
                    rng.randint(0x21, 0x7E), rng.randint(0xA0, 0x24F), rng.randint(0x370, 0x3FF),
                    rng.randint(0x400, 0x4FF), rng.randint(0x4E00, 0x9FA5),
                    rng.randint(0x3040, 0x30FF), rng.randint(0x1F600, 0x1F64F),
                    rng.randint(0x2190, 0x22FF), rng.randint(0x20000, 0x2A6DF),
                ])))
            parts.append(rng.choice(seps))
        generated.append("".join(parts))
    for _ in range(30):
        generated.append(rng.choice(CODE) + rng.choice(seps) + rng.choice(CODE))
    return fixed + generated


def run_tool(tool, model, payload, *flags):
    proc = subprocess.run([tool, "--model", model, *flags], input=json.dumps(payload),
                          capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def split_special(text, specials):
    """llama.cpp's tokenizer_st_partition: each special text in turn (longest first, then by
    id) cuts every run of raw text at all its occurrences. Yields str (raw) or int (token)."""
    fragments = [text] if text else []
    for token_text, token_id in specials:
        out = []
        for f in fragments:
            if not isinstance(f, str):
                out.append(f)
                continue
            pieces = f.split(token_text)
            for k, p in enumerate(pieces):
                if k > 0:
                    out.append(token_id)
                if p:
                    out.append(p)
        fragments = out
    return fragments


def reference_ids(sp, text, specials):
    if specials is None:
        return sp.encode(text)
    ids = []
    for f in split_special(text, specials):
        # Every run starts the text or follows a special token, so each gets the dummy prefix
        # that sp.encode gives it: llama.cpp's is_prev_special rule.
        ids.extend(sp.encode(f) if isinstance(f, str) else [f])
    return ids


def reference_decode(sp, ids, render_special):
    """llama.cpp's detokenize without remove_special: each piece (control tokens as their text
    only when rendering special), one leading space of the first piece dropped."""
    out = b""
    for k, i in enumerate(ids):
        piece = sp.id_to_piece(i)
        if sp.is_control(i) or sp.is_unknown(i):
            b = piece.encode() if render_special else b""
        elif sp.is_byte(i):
            b = bytes([int(piece[3:5], 16)])
        else:
            b = piece.replace("\u2581", " ").encode()
        if k == 0 and b.startswith(b" "):
            b = b[1:]
        out += b
    return out.decode("utf-8", errors="replace")


def compare(label, sp, corpus, ours, specials):
    bad = 0
    for text, got in zip(corpus, ours):
        want = reference_ids(sp, text, specials)
        if specials is None:
            want_text = sp.decode(want)
            # The reference itself must round-trip the corpus; a "▁" written in the text is
            # read back as a space by both.
            if want_text != text and "\u2581" not in text:
                raise RuntimeError(f"sentencepiece does not round-trip {text!r}: {want_text!r}")
        else:
            want_text = reference_decode(sp, want, True)
        if got["ids"] != want or got["decoded"] != want_text:
            bad += 1
            if bad <= 10:
                print(f"[{label}] MISMATCH for {text!r}")
                print(f"  aeg: {got['ids']} -> {[sp.id_to_piece(i) for i in got['ids']]}")
                print(f"  ref: {want} -> {[sp.id_to_piece(i) for i in want]}")
                if got["decoded"] != want_text:
                    print(f"  decoded: aeg {got['decoded']!r} ref {want_text!r}")
    total = sum(len(g["ids"]) for g in ours)
    print(f"[{label}] {len(corpus) - bad}/{len(corpus)} strings identical ({total} tokens)")
    return bad


def check_vocabulary(tool, sp, corpus):
    n = sp.get_piece_size()
    fallback = sum(any(sp.is_byte(i) for i in sp.encode(t)) for t in corpus)
    print(f"[train] {n} pieces ({sum(sp.is_byte(i) for i in range(n))} bytes); "
          f"{fallback} of {len(corpus)} strings need byte fallback")
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "spm.gguf")
        write_gguf(sp, path)
        bad = compare(f"plain {n}", sp, corpus, run_tool(tool, path, corpus), None)
        # The same model read from a folder's tokenizer.model by our protobuf reader.
        folder = os.path.join(workdir, "spm-hf")
        write_folder(sp, folder)
        bad += compare(f"folder {n}", sp, corpus, run_tool(tool, folder, corpus), None)

        specials = sorted(((sp.id_to_piece(i), i) for i in range(n)
                           if sp.is_control(i) or sp.is_unknown(i)),
                          key=lambda t: (-len(t[0].encode()), t[1]))
        special_corpus = [
            "<s>", "</s>", "<s>hello", "<s> hello", "<s>Hello, world!</s>", "hello</s>",
            "<s>[INST] What is 2+2? [/INST] 4</s><s>[INST] and 3+3? [/INST]",
            "text<unk>more", "<s></s><s>", " <s> spaced </s> ", "<s\n>", "<</s>s>",
            "<s>😀 emoji</s>", "<strong>x</strong><s>y</s>",
        ] + corpus[:120]
        for label, model in (("special", path), ("folder special", folder)):
            bad += compare(f"{label} {n}", sp, special_corpus,
                           run_tool(tool, model, special_corpus, "--parse-special"), specials)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, help="path of the tokenize_tool executable")
    args = ap.parse_args()
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401
        import sentencepiece  # noqa: F401
    except ImportError as e:
        print(f"SKIP: Python package '{e.name}' is missing; run scripts/python-deps "
              "(or: python3 -m pip install sentencepiece gguf numpy)")
        return SKIP

    corpus = make_corpus()
    bad = 0
    for vocab_size in (500, 1000):
        bad += check_vocabulary(args.tool, train(vocab_size), corpus)
    if bad:
        print(f"FAIL: {bad} difference(s) from sentencepiece")
        return 1
    print("OK: identical to sentencepiece")
    return 0


if __name__ == "__main__":
    sys.exit(main())
