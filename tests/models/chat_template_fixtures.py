#!/usr/bin/env python3
"""Writes tests/models/fixtures/chat_templates/expected.json: what Hugging Face `transformers`
renders (`apply_chat_template(..., tokenize=False)`, with and without the generation prompt) for
each chat template in that folder over a fixed set of conversations. ChatTemplateFixtures
(chat_template_fixtures_test.cpp) recognises each template's text as its family and compares its
own rendering, so the C++ tests need neither transformers nor Python.

    scripts/fetch-model                      # the models' templates, into models/chat-templates
    pip install transformers tokenizers jinja2
    python3 tests/models/chat_template_fixtures.py

The models' own `chat_template` texts, byte for byte, are not part of the repository: they come
from llama.cpp's source tree as PyPI's llama-cpp-python sdist ships it (`pip download --no-deps
--no-binary :all: llama-cpp-python==0.3.36`): `models/templates/*.jinja` (fetched there from
the model repositories by llama.cpp's scripts/get_chat_template.py) and the template strings
of `tests/test-chat-template.cpp` (quoted there from the models' tokenizer_config.json).
`--extract SDIST` copies them from such a tarball into `--templates` (models/chat-templates/,
what scripts/fetch-model does) and stops. Llama 3.3's template is byte for byte Llama 3.1's,
which stands for both. The older families' templates (ChatML, Llama 3, Llama 2, Mistral
v0.1/v0.2's first) are the ones reference_data.py holds; they are written beside the fixture.

Dates: the templates that call `strftime_now` get a fixed clock (FIXED_NOW below, recorded in
the file as `date`), so that the expected text does not change from day to day.
"""

import argparse
import ast
import datetime
import json
import pathlib
import re
import tarfile

from reference_data import CHATML_TEMPLATE, LLAMA2_TEMPLATE, LLAMA3_TEMPLATE, MISTRAL_TEMPLATE

FIXED_NOW = datetime.datetime(2025, 3, 4, 9, 30, 0)

LLAMA3_TOKENS = {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>"}
MISTRAL_TOKENS = {"bos": "<s>", "eos": "</s>"}

# file -> (family chat_template recognises it as, special tokens, where the text comes from)
TEMPLATES = {
    "chatml.jinja": ("chatml", {"bos": "", "eos": "<|im_end|>"}, "reference_data.CHATML_TEMPLATE"),
    "llama3.jinja": ("llama3", LLAMA3_TOKENS, "reference_data.LLAMA3_TEMPLATE"),
    "llama2.jinja": ("llama2", MISTRAL_TOKENS, "reference_data.LLAMA2_TEMPLATE"),
    "mistral.jinja": ("mistral", MISTRAL_TOKENS, "reference_data.MISTRAL_TEMPLATE"),
    "meta-llama-Llama-3.1-8B-Instruct.jinja":
        ("llama3.1", LLAMA3_TOKENS, "models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja"),
    "meta-llama-Llama-3.2-3B-Instruct.jinja":
        ("llama3.1", LLAMA3_TOKENS, "models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja"),
    "mistralai-Mistral-7B-Instruct-v0.2-v1.jinja":
        ("mistral-v1", MISTRAL_TOKENS, "test:mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1'"),
    "mistralai-Mistral-Large-Instruct-2407.jinja":
        ("mistral-v3", MISTRAL_TOKENS, "test:Mistral-Large-Instruct-2407 (mistralai 'v3'"),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja":
        ("mistral-v3-tekken", MISTRAL_TOKENS,
         "models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja"),
    "mistralai-Mistral-Large-Instruct-2411.jinja":
        ("mistral-v7", MISTRAL_TOKENS, "test:mistralai/Mistral-Large-Instruct-2411 (mistralai 'v7'"),
    "mistralai-Mistral-Small-3.2-24B-Instruct-2506.jinja":
        ("mistral-v7-tekken", MISTRAL_TOKENS,
         "models/templates/Mistral-Small-3.2-24B-Instruct-2506.jinja"),
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja":
        ("mistral-v7-tekken", MISTRAL_TOKENS,
         "models/templates/mistralai-Ministral-3-14B-Reasoning-2512.jinja"),
}
REFERENCE_DATA = {"reference_data.CHATML_TEMPLATE": CHATML_TEMPLATE,
                  "reference_data.LLAMA3_TEMPLATE": LLAMA3_TEMPLATE,
                  "reference_data.LLAMA2_TEMPLATE": LLAMA2_TEMPLATE,
                  "reference_data.MISTRAL_TEMPLATE": MISTRAL_TEMPLATE}


def m(role, content):
    return {"role": role, "content": content}


SYSTEM = m("system", "Be brief.")
CONVERSATIONS = [
    [m("user", "Hi")],
    [SYSTEM, m("user", "Hi")],
    [m("user", "Hi"), m("assistant", "Hello! How can I help?"), m("user", "Tell me a joke.")],
    [SYSTEM, m("user", "Hi"), m("assistant", "Hello!"), m("user", "Joke?")],
    [m("system", "  Padded system.\n"), m("user", " Hi \n"), m("assistant", "  Hello!  \n"),
     m("user", "\tJoke?  ")],
    [m("user", "Grüß dich — 你好 👋"), m("assistant", "Привет! ✓"), m("user", "¿Qué tal? ñ")],
    [SYSTEM, m("user", "Hi"), m("assistant", "Hello!")],
    [m("user", "Say \"{{ not jinja }}\" and 'x'\n\ttabbed\\n")],
    [SYSTEM],
    [],
    [SYSTEM, m("user", "Hi"), m("system", "Now be verbose."), m("user", "Why?")],
    [m("user", "2+2?"), m("assistant", "Let me check."), m("tool", "{\"result\": 4, \"s\": \"é\\n\"}")],
    [m("assistant", "I start.")],
    [m("user", "Hi"), m("user", "Again")],
    # White space Python's strip() (Jinja's trim) removes beyond ASCII's; U+200B it keeps.
    [m("system", "\u2003Wide system\u00a0"), m("user", "\u00a0Wide\u3000space\u2003\x85"),
     m("assistant", "\u3000ok\u2028"), m("user", "\u200bzero width\u200b")],
]


def extract_from_sdist(sdist, out):
    """Copies the templates TEMPLATES names from llama-cpp-python's sdist into `out`."""
    with tarfile.open(sdist) as tar:
        def read(suffix):
            member = next(n for n in tar.getnames() if n.endswith("vendor/llama.cpp/" + suffix))
            return tar.extractfile(member).read().decode("utf-8")
        tests = read("tests/test-chat-template.cpp")
        for name, (_, _, source) in TEMPLATES.items():
            if source.startswith("models/"):
                text = read(source)
            elif source.startswith("test:"):
                at = tests.index('"' + source[len("test:"):])
                literal = re.search(r'/\* \.template_str= \*/ (".*"),\n', tests[at:]).group(1)
                text = ast.literal_eval(literal)
            else:
                continue
            (out / name).write_text(text, encoding="utf-8", newline="")
            print(f"{name}: {len(text)} characters from {source}")


def render_all(out, templates):
    import transformers
    import transformers.utils.chat_template_utils as ctu
    from tokenizers import Tokenizer, models

    class FixedClock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_NOW

    ctu.datetime = FixedClock  # strftime_now reads the module's datetime when it is called
    expected = {"transformers": transformers.__version__,
                "date": FIXED_NOW.strftime("%Y-%m-%d"), "conversations": CONVERSATIONS,
                "templates": []}
    for name, (family, tokens, source) in TEMPLATES.items():
        path = out / name
        if source in REFERENCE_DATA:
            path.write_text(REFERENCE_DATA[source], encoding="utf-8", newline="")
        else:
            path = templates / name
        text = path.read_text(encoding="utf-8")
        special = {k + "_token": v for k, v in tokens.items() if v}
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()),
                                                   **special)
        cases = []
        for i, conv in enumerate(CONVERSATIONS):
            for gen in (True, False):
                case = {"conversation": i, "add_generation_prompt": gen}
                try:
                    case["text"] = tok.apply_chat_template(conv, chat_template=text,
                                                           tokenize=False,
                                                           add_generation_prompt=gen)
                except Exception as e:  # the template refuses the conversation
                    case["refused"] = f"{type(e).__name__}: {e}"
                cases.append(case)
        rendered = sum("text" in c for c in cases)
        expected["templates"].append({"file": name, "family": family, **tokens, "cases": cases})
        print(f"{name}: {family}, {rendered} of {len(cases)} conversations rendered")
    # One template a line, so that a change shows as a change of that template's line.
    templates = expected.pop("templates")
    head = json.dumps(expected, ensure_ascii=False)[:-1]
    body = ",\n".join(json.dumps(t, ensure_ascii=False) for t in templates)
    (out / "expected.json").write_text(f'{head},\n"templates": [\n{body}\n]}}\n',
                                       encoding="utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "fixtures" /
                                         "chat_templates"))
    ap.add_argument("--templates", default=str(pathlib.Path(__file__).parents[2] / "models" /
                                               "chat-templates"),
                    help="where the models' own templates are (scripts/fetch-model puts them)")
    ap.add_argument("--extract", metavar="SDIST",
                    help="copy the models' templates from llama-cpp-python's sdist into "
                         "--templates, and stop")
    args = ap.parse_args()
    templates = pathlib.Path(args.templates)
    if args.extract:
        templates.mkdir(parents=True, exist_ok=True)
        extract_from_sdist(args.extract, templates)
        return
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    render_all(out, templates)


if __name__ == "__main__":
    main()
