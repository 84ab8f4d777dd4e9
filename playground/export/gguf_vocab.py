"""The tokenizer's metadata in a GGUF file, so llama.cpp splits text into the app's tokens.

Gemma 3's vocabulary is a SentencePiece-style ("llama") vocabulary: its tokens, scores and token types
are taken from the embedded default model's GGUF, after checking that they are the run tokenizer's
tokens. A byte-level BPE tokenizer (GPT-2 style, as Llama-family models built from `tokenizer.json`
use) becomes a "gpt2" vocabulary with its merges and the pre-tokenizer llama.cpp knows it by.
"""

from __future__ import annotations

import json
from typing import Any

import gguf

from ..errors import PlaygroundError

NORMAL, CONTROL, USER_DEFINED, UNUSED = (gguf.TokenType.NORMAL, gguf.TokenType.CONTROL,
                                         gguf.TokenType.USER_DEFINED, gguf.TokenType.UNUSED)
SPACE = "\u2581"  # SentencePiece's space
LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"


def add_vocab(writer: gguf.GGUFWriter, tokenizer: Any, n_vocab: int, adds_bos: bool) -> None:
    """Write the tokenizer's vocabulary, special tokens and their flags; `n_vocab` is the embedding's rows."""
    if _embedded_tokens_match(tokenizer):
        _add_embedded_vocab(writer)
    else:
        _add_bpe_vocab(writer, tokenizer, n_vocab)
    for name, value in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                        ("unknown", tokenizer.unk_token_id), ("padding", tokenizer.pad_token_id)):
        if value is not None:
            writer.add_uint32(f"tokenizer.ggml.{name}_token_id", int(value))
    writer.add_add_bos_token(adds_bos)
    writer.add_add_eos_token(False)


def _embedded_path() -> Any:
    from .. import store

    return store._gguf_path()


_EMBEDDED: dict[str, Any] = {}


def _embedded_fields() -> dict[str, Any]:
    """tokens, scores, token types and pre-tokenizer of the embedded default GGUF (read once)."""
    if not _EMBEDDED:
        reader = gguf.GGUFReader(str(_embedded_path()))
        for key in ("tokens", "scores", "token_type", "model", "pre"):
            _EMBEDDED[key] = reader.fields[f"tokenizer.ggml.{key}"].contents()
        _EMBEDDED["add_space_prefix"] = reader.fields["tokenizer.ggml.add_space_prefix"].contents()
    return _EMBEDDED


def _embedded_tokens_match(tokenizer: Any) -> bool:
    """Whether the tokenizer has the embedded Gemma 3 vocabulary (spaces written either way)."""
    if len(tokenizer) != 262144 or tokenizer.convert_ids_to_tokens(106) != "<end_of_turn>":
        return False
    ours = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    theirs = _embedded_fields()["tokens"]
    return len(ours) == len(theirs) and all(a == b or a.replace(SPACE, " ") == b.replace(SPACE, " ")
                                            for a, b in zip(ours, theirs))


def _add_embedded_vocab(writer: gguf.GGUFWriter) -> None:
    fields = _embedded_fields()
    writer.add_tokenizer_model(fields["model"])
    writer.add_tokenizer_pre(fields["pre"])
    writer.add_token_list(fields["tokens"])
    writer.add_token_scores(fields["scores"])
    writer.add_token_types(fields["token_type"])
    writer.add_add_space_prefix(bool(fields["add_space_prefix"]))


def _add_bpe_vocab(writer: gguf.GGUFWriter, tokenizer: Any, n_vocab: int) -> None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not _byte_level(spec):
        raise PlaygroundError("This tokenizer cannot be written into a GGUF file here: only Gemma 3's vocabulary "
                              "and byte-level BPE tokenizers (GPT-2 style, from tokenizer.json) are supported.")
    count = len(tokenizer)
    if count > n_vocab:
        raise PlaygroundError(f"The tokenizer has {count:,} tokens but the model's embedding only {n_vocab:,} rows.")
    special = set(tokenizer.all_special_ids)
    added = {token.content: token for token in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(count)))):
        tokens.append(token)
        types.append(CONTROL if token_id in special or getattr(added.get(token), "special", False)
                     else USER_DEFINED if token in added else NORMAL)
    for extra in range(count, n_vocab):  # embedding rows with no token: padding, never produced
        tokens.append(f"[PAD{extra}]")
        types.append(UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)


def _byte_level(spec: dict[str, Any]) -> bool:
    return '"ByteLevel"' in json.dumps(spec.get("pre_tokenizer")) or '"ByteLevel"' in json.dumps(spec.get("decoder"))


def _pre_tokenizer(spec: dict[str, Any]) -> str:
    """llama.cpp's name for the way this tokenizer splits text before BPE."""
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [part.get("type") for part in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Split", "ByteLevel"] and (parts[0].get("pattern") or {}).get("Regex", "").startswith(LLAMA3_SPLIT):
        return "llama-bpe"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    raise PlaygroundError(f"This tokenizer's pre-tokenizer ({' + '.join(map(str, kinds))}) has no known name in "
                          "llama.cpp, so llama.cpp would split text differently: it cannot be exported to GGUF here.")
