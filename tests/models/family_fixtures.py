#!/usr/bin/env python3
"""Writes the model-family fixtures in tests/models/fixtures/: for each family a tiny model
with random weights, built and run by Hugging Face `transformers` (the oracle), saved twice:
as a GGUF the way llama.cpp's converter lays that family out (with a byte-level vocabulary and
the family's chat template, so that the commands can serve it), and as a Hugging Face model
folder (config.json, safetensors shards in the family's usual dtype, tokenizer.json and
tokenizer_config.json, written by transformers and tokenizers themselves). Beside them, the
logits and greedy tokens transformers computes for a fixed prompt, and what the folder's
Hugging Face tokenizer makes of a text corpus and a conversation.

    pip install torch transformers gguf numpy
    python3 tests/models/family_fixtures.py [--out tests/models/fixtures]

The C++ tests (ModelFamilies in llama_runner_test, HfFolder in hf_folder_test) read the files;
they need neither torch nor Python. Weights are rounded to f16 (bf16 for a bf16 folder, whose
values f16 also holds exactly) before transformers sees them, so every copy computes with the
same numbers.
"""

import argparse
import json
import pathlib

import numpy as np
import torch
import transformers
from gguf import GGUFWriter
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, \
    pre_tokenizers, processors

from reference_data import CHATML_TEMPLATE, LLAMA2_TEMPLATE, LLAMA3_TEMPLATE, byte_symbols
from tokenizer_reference import make_corpus

PROMPT = [3, 17, 42, 99, 7, 250, 128, 64, 5, 201, 33, 150]
GREEDY_STEPS = 32


# The vocabulary every fixture carries: the 256 byte-level symbols of GPT-2's alphabet, one merge
# (two spaces), then special tokens; enough for `aegaeon generate` and `serve` to run the model.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|pad|>"]
def write_tokenizer(w, arch):
    space = byte_symbols()[ord(" ")]
    tokens = byte_symbols() + [space + space] + SPECIALS
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch.startswith("qwen") else "llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types([1] * 257 + [3] * len(SPECIALS))
    w.add_token_merges([space + " " + space])
    ids = {t: i for i, t in enumerate(tokens)}
    if arch.startswith("qwen"):
        w.add_eos_token_id(ids["<|endoftext|>"])
        w.add_eot_token_id(ids["<|im_end|>"])
        w.add_chat_template(CHATML_TEMPLATE)
    else:
        w.add_bos_token_id(ids["<|begin_of_text|>"])
        w.add_eos_token_id(ids["<|eot_id|>"])
        w.add_chat_template(LLAMA3_TEMPLATE)
    w.add_pad_token_id(ids["<|pad|>"])


def families():
    common = dict(vocab_size=257 + len(SPECIALS), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  rms_norm_eps=1e-6, rope_theta=10000.0)
    return {
        # Llama (and Mistral, Yi, SmolLM): untied output, q/k permuted for adjacent-pair RoPE.
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(
            **common, tie_word_embeddings=False)),
        # Llama 3.1+: long-context RoPE scaling, stored in GGUF as per-pair factors. A short
        # original context makes the scaling reach most of a tiny head's frequencies.
        "llama3": transformers.LlamaForCausalLM(transformers.LlamaConfig(
            **{**common, "rope_theta": 500000.0}, tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64})),
        # Qwen2 / Qwen2.5: q/k/v biases, RoPE over the halves of a head, tied embeddings
        # (as the small Qwen2.5 models are).
        "qwen2": transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
            **common, tie_word_embeddings=True)),
        # Qwen3: per-head q/k RMSNorm, a head wider than hidden/heads (as Qwen3 has).
        "qwen3": transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            **common, head_dim=32, tie_word_embeddings=False, attention_bias=False)),
    }


def randomize(model, seed, dtype=torch.float16):
    """Weights large enough that logits are far from ties, rounded to `dtype` (f16, or bf16
    values f16 holds exactly as well)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith("bias"):
                v = 0.1 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / np.sqrt(p.shape[-1]) * 1.5
            v = v.to(dtype).float()
            # bf16 values too small for f16's precision: zero, so that both files hold them.
            p.copy_(torch.where(v.half().float() == v, v, torch.zeros_like(v)))


def permute_for_adjacent_rope(w, heads):
    """llama.cpp's permutation of a llama q/k matrix: the halves of each head interleaved."""
    rows, cols = w.shape
    return w.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def llama3_rope_factors(cfg):
    """What llama.cpp's converter stores as rope_freqs: each pair's unscaled frequency over its
    scaled one, both from transformers' own RoPE initialisation."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    theta = cfg.rope_parameters["rope_theta"]
    dim = cfg.hidden_size // cfg.num_attention_heads
    plain = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    return (plain / scaled).numpy()


def write_gguf(path, arch, model):
    cfg = model.config
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w = GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    # transformers 5 keeps the RoPE base among rope_parameters; older versions as rope_theta.
    params = getattr(cfg, "rope_parameters", None) or {}
    w.add_rope_freq_base(params.get("rope_theta", getattr(cfg, "rope_theta", None)))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    write_tokenizer(w, arch)

    def matrix(name, a):
        w.add_tensor(name, a.astype(np.float16))

    def vector(name, a):
        w.add_tensor(name, a.astype(np.float32))

    matrix("token_embd.weight", sd["model.embed_tokens.weight"])
    if (getattr(cfg, "rope_parameters", None) or {}).get("rope_type") == "llama3":
        vector("rope_freqs.weight", llama3_rope_factors(cfg))
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        b = f"blk.{l}."
        q = sd[p + "self_attn.q_proj.weight"]
        k = sd[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q = permute_for_adjacent_rope(q, cfg.num_attention_heads)
            k = permute_for_adjacent_rope(k, cfg.num_key_value_heads)
        vector(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        matrix(b + "attn_q.weight", q)
        matrix(b + "attn_k.weight", k)
        matrix(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        matrix(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        if arch == "qwen2":
            for x in "qkv":
                vector(b + f"attn_{x}.bias", sd[p + f"self_attn.{x}_proj.bias"])
        if arch == "qwen3":
            vector(b + "attn_q_norm.weight", sd[p + "self_attn.q_norm.weight"])
            vector(b + "attn_k_norm.weight", sd[p + "self_attn.k_norm.weight"])
        vector(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        matrix(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        matrix(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        matrix(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    vector("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        matrix("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def oracle(model):
    with torch.no_grad():
        ids = torch.tensor([PROMPT])
        logits = model(ids).logits[0, -1].tolist()
        seq = list(PROMPT)
        greedy = []
        for _ in range(GREEDY_STEPS):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
    return {"prompt": PROMPT, "logits": logits, "greedy": greedy}


# The Hugging Face folder of each family: its dtype, whether its safetensors are sharded, and
# its tokenizer (byte-level BPE under the family's pre-tokenizer, or Llama 2's SentencePiece
# BPE with byte fallback, as tokenizer.json describes them).
HF_FOLDERS = {
    "llama": dict(dtype=torch.float16, shard=True, tokenizer="sentencepiece"),
    "llama3": dict(dtype=torch.float32, shard=False, tokenizer="llama3"),
    "qwen2": dict(dtype=torch.float16, shard=False, tokenizer="qwen2"),
    "qwen3": dict(dtype=torch.bfloat16, shard=True, tokenizer="qwen2"),
}


def byte_level_tokenizer(kind):
    """The fixtures' byte-level vocabulary as Llama 3's or Qwen2's tokenizer.json has it."""
    space = byte_symbols()[ord(" ")]
    vocab = {t: i for i, t in enumerate(byte_symbols() + [space + space])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(space, space)]))
    digits = "" if kind == "qwen2" else "{1,3}"
    expr = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}" + digits +
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(expr), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    if kind == "qwen2":
        return tok, dict(eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         chat_template=CHATML_TEMPLATE), ["<|im_end|>", "<|endoftext|>"]
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok, dict(bos_token=bos, eos_token="<|eot_id|>", pad_token="<|pad|>",
                     chat_template=LLAMA3_TEMPLATE), ["<|endoftext|>", "<|eot_id|>"]


def sentencepiece_tokenizer():
    """Llama 2's kind of tokenizer.json: SentencePiece BPE with byte fallback and a leading
    space, over <unk> <s> </s>, the 256 byte pieces and a few merged pieces."""
    pieces = (["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] +
              ["\u2581", "t", "h", "e", "\u2581t", "he"])
    tok = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)},
                               merges=[("\u2581", "t"), ("h", "e")], unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ["<unk>", "<s>", "</s>"]])
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                     chat_template=LLAMA2_TEMPLATE), ["</s>"]


CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi there! What is 12 + 30?"}]


def write_hf_folder(path, model, spec):
    """The model as save_pretrained writes it, its tokenizer, and what that tokenizer makes of a
    corpus and of a conversation (for the C++ tokenizer to match)."""
    import copy
    import shutil
    shutil.rmtree(path, ignore_errors=True)
    if spec["tokenizer"] == "sentencepiece":
        tok, special, stops = sentencepiece_tokenizer()
    else:
        tok, special, stops = byte_level_tokenizer(spec["tokenizer"])
    assert tok.get_vocab_size() == model.config.vocab_size
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    fast.save_pretrained(path)
    saved = copy.deepcopy(model).to(spec["dtype"])
    saved.generation_config = transformers.GenerationConfig(
        eos_token_id=[tok.token_to_id(t) for t in stops])
    saved.save_pretrained(path, max_shard_size="100KB" if spec["shard"] else "1GB")
    corpus = make_corpus()
    corpus = corpus[:120] + corpus[-40:]
    return {
        "dtype": str(spec["dtype"]).removeprefix("torch."),
        "tokenized": [[text, fast(text)["input_ids"]] for text in corpus],
        "chat": {"messages": CHAT,
                 "text": fast.apply_chat_template(CHAT, tokenize=False,
                                                  add_generation_prompt=True)},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "fixtures"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for i, (name, model) in enumerate(families().items()):
        arch = "llama" if name == "llama3" else name
        model.eval()
        spec = HF_FOLDERS[name]
        randomize(model, 1000 + i, torch.bfloat16 if spec["dtype"] == torch.bfloat16
                  else torch.float16)
        write_gguf(out / f"{name}-tiny.gguf", arch, model)
        expected = oracle(model)
        expected["architecture"] = arch
        expected["transformers"] = transformers.__version__
        expected["hf"] = write_hf_folder(out / f"{name}-tiny-hf", model, spec)
        (out / f"{name}-tiny.json").write_text(json.dumps(expected, ensure_ascii=False) + "\n")
        print(f"{name}: wrote {name}-tiny.gguf, {name}-tiny-hf/ and {name}-tiny.json "
              f"(greedy {expected['greedy'][:8]}...)")


if __name__ == "__main__":
    main()
