"""The project's tokenizer specs as Hugging Face tokenizer files (``tokenizer.json`` + ``tokenizer_config.json``).

A model folder holds its tokenizer as a ``mambatune-tokenizer`` spec (a plain dict; core knows no
domain, so the spec is all it reads). :func:`save_hf_tokenizer` writes files that
``transformers.AutoTokenizer`` / ``PreTrainedTokenizerFast.from_pretrained(folder)`` load and that give
the spec's ids for every text:

- ``dna`` (``k`` = 1): A C G T N and their lower-case forms are ids 5..9 (``vocab`` gives them), the
  IUPAC codes R Y S W K M B D H V (any case) are N; any other character is ``[UNK]`` (the project's own
  tokenizer raises there instead). k-mer vocabularies have no exact equivalent (a k-mer holding N shares
  one id) and are refused;
- ``byte``: byte b is id ``b + offset``; the ids below the offset are the specials (``specials`` names
  them, else ``pad`` 0 and ``bos`` ``eos`` ``cls`` for offset 4);
- ``char``: 0 pad, 1 unknown, ``chars[i]`` is id ``i + 2``;
- ``hf``: the embedded Hugging Face ``tokenizer`` as it is.

No post-processor adds special tokens, so ``encode`` gives the same ids with or without
``add_special_tokens``. The special tokens are registered as such (so ``pad_token_id`` is right): a
text holding a special token's literal name, e.g. ``<pad>``, encodes it as that one id.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import atomic_write_json, atomic_write_text

DNA_BASES = "ACGTN"
IUPAC_AMBIGUITY = "RYSWKMBDHV"
BYTE_SPECIAL_NAMES = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "cls": "<cls>", "unk": "<unk>",
                      "mask": "<mask>", "sep": "<sep>"}


class TokenizerExportError(ValueError):
    """A tokenizer spec that cannot be written as Hugging Face tokenizer files with the same ids."""


def _single_chars():
    """A pre-tokenizer that makes every character (code point) its own piece, whitespace included."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")


def _word_level(vocab: dict[str, int], unk: str | None):
    from tokenizers import Tokenizer, models

    ids = sorted(vocab.values())
    if len(set(ids)) != len(ids):
        raise TokenizerExportError("the tokenizer's vocabulary gives one id to several tokens")
    return Tokenizer(models.WordLevel(vocab, unk_token=unk))


def _dna(spec: dict):
    from tokenizers import normalizers

    k = int(spec.get("k", 1))
    if k != 1:
        raise TokenizerExportError(
            f"a DNA k-mer tokenizer (k={k}) has no exact Hugging Face equivalent (every k-mer holding N shares "
            "one id); only k=1 is exported as tokenizer files")
    vocab = {str(t): int(i) for t, i in (spec.get("vocab") or {}).items()}
    missing = [b for b in DNA_BASES if b not in vocab]
    if missing:
        raise TokenizerExportError(f"the DNA tokenizer's vocab has no id for {', '.join(missing)}")
    unk = next((t for t in ("[UNK]", "<unk>") if t in vocab), None)
    tok = _word_level(vocab, unk)
    # soft-masked (lower-case) bases are the same bases; IUPAC ambiguity codes are N
    rules = [normalizers.Replace(b.lower(), b) for b in DNA_BASES]
    rules += [normalizers.Replace(c, "N") for c in IUPAC_AMBIGUITY + IUPAC_AMBIGUITY.lower()]
    tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = _single_chars()
    specials = {t: i for t, i in vocab.items() if t.startswith("[") and t.endswith("]")}
    roles = {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]",
             "unk_token": "[UNK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}
    return tok, specials, {r: t for r, t in roles.items() if t in vocab}


def _byte(spec: dict):
    from tokenizers import decoders, models, pre_tokenizers
    from tokenizers import Tokenizer

    offset = int(spec.get("offset", 1))  # a file without an offset predates offset 4 and means 1
    if offset < 1:
        raise TokenizerExportError(f"byte tokenizer offset {offset}: id 0 must stay padding, so offset >= 1")
    given = spec.get("specials") or ({"pad": 0, "bos": 1, "eos": 2, "cls": 3} if offset == 4 else {"pad": 0})
    names = {int(i): BYTE_SPECIAL_NAMES.get(role, f"<{role}>") for role, i in given.items()}
    if any(not 0 <= i < offset for i in names):
        raise TokenizerExportError(f"byte tokenizer specials {given} must be ids below the offset {offset}")
    for i in range(offset):
        names.setdefault(i, f"<special_{i}>")
    alphabet = pre_tokenizers.ByteLevel.alphabet()  # one printable character per byte
    byte_chars = _bytes_to_chars()
    assert set(byte_chars) == set(alphabet)
    vocab = {name: i for i, name in names.items()}
    vocab.update({ch: b + offset for b, ch in enumerate(byte_chars)})
    # BPE without merges over the byte alphabet: every byte is its own token
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    roles = {f"{role}_token": names[int(i)] for role, i in given.items() if role in ("pad", "bos", "eos", "cls",
                                                                                      "unk", "mask", "sep")}
    return tok, {name: i for i, name in names.items()}, roles


def _bytes_to_chars() -> list[str]:
    """The byte-level alphabet in byte order: printable bytes stand for themselves, the rest map past 255
    (the scheme of GPT-2's byte-level BPE, which the ByteLevel pre-tokenizer applies)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def _char(spec: dict):
    chars = [str(c) for c in spec.get("chars") or []]
    if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
        raise TokenizerExportError("a char tokenizer's chars must be distinct single characters")
    specials = {"<pad>": 0, "<unk>": 1}
    vocab = dict(specials)
    vocab.update({c: i + 2 for i, c in enumerate(chars)})
    tok = _word_level(vocab, "<unk>")
    tok.pre_tokenizer = _single_chars()
    return tok, specials, {"pad_token": "<pad>", "unk_token": "<unk>"}


def _hf(spec: dict):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(spec["tokenizer"]))
    roles = {}
    if spec.get("pad_id") is not None:
        roles["pad_token"] = tok.id_to_token(int(spec["pad_id"]))
    return tok, {}, roles


def hf_tokenizer(spec: dict):
    """``(tokenizers.Tokenizer, {special token: id}, {role: token})`` giving ``spec``'s ids (see the module doc)."""
    builders = {"dna": _dna, "byte": _byte, "char": _char, "hf": _hf}
    kind = spec.get("kind")
    if kind not in builders:
        raise TokenizerExportError(f"tokenizer kind {kind!r} cannot be exported; known: {', '.join(builders)}")
    tok, specials, roles = builders[kind](spec)
    from tokenizers import AddedToken

    if specials:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, _ in sorted(specials.items(), key=lambda kv: kv[1])])
    return tok, specials, roles


def save_hf_tokenizer(spec: dict, folder: str | os.PathLike, model_max_length: int | None = None) -> list[Path]:
    """Writes ``folder/tokenizer.json`` (Hugging Face format) and ``folder/tokenizer_config.json`` for
    ``spec``; returns the files. Raises :class:`TokenizerExportError` for a spec with no exact equivalent."""
    tok, specials, roles = hf_tokenizer(spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "tokenizer.json", tok.to_str(pretty=True))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "mambatune_tokenizer": {k: v for k, v in spec.items() if k != "tokenizer"}, **roles}
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    atomic_write_json(folder / "tokenizer_config.json", config)
    return [folder / "tokenizer.json", folder / "tokenizer_config.json"]
