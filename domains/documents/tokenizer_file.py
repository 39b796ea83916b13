"""The tokenizer that travels with a text checkpoint: ``tokenizer.json`` beside ``model.safetensors``.

Format (``"format": "mambatune-tokenizer"``, the one the DNA and generic models use too), by kind:

- ``byte``: ``{"kind": "byte", "offset": 4, "specials": {"pad": 0, "bos": 1, "eos": 2, "cls": 3},
  "vocab_size": 260, "encoding": "utf-8"}``: byte b is id ``b + offset``; ``specials`` are the ids
  below the offset. The offset defines the ids (a file without one predates offsets and means 1), so two
  byte tokenizers agree when their offsets do (and their specials and sizes, where both files give them):
  the generic pipeline's ``{"kind": "byte", "offset": 4}`` is ours; its older offset-1 files are not;
- ``hf``: ``{"kind": "hf", "pad_id": ..., "vocab_size": ..., "tokenizer": {the Hugging Face
  tokenizer.json}}``: the whole Hugging Face tokenizer, embedded.

:func:`check_tokenizer` compares the tokenizer a recipe asks for with a checkpoint's; a difference is
a :class:`TokenizerMismatchError` that says which file and what differs (ids are never remapped).
"""
from __future__ import annotations

import json
from pathlib import Path

from .tokenizers import ByteTokenizer, HFTokenizer

TOKENIZER_FILE = "tokenizer.json"
FORMAT = "mambatune-tokenizer"


class TokenizerMismatchError(ValueError):
    """A checkpoint's saved tokenizer that disagrees with the recipe's, or a tokenizer file that is not one."""


def tokenizer_spec(tok) -> dict:
    """What defines ``tok``'s ids, as the JSON object :func:`save_tokenizer` writes."""
    if isinstance(tok, ByteTokenizer):
        return {"format": FORMAT, "kind": "byte", "offset": tok.OFFSET, "encoding": "utf-8",
                "specials": {"pad": tok.PAD, "bos": tok.BOS, "eos": tok.EOS, "cls": tok.CLS},
                "vocab_size": tok.vocab_size, "pad_id": tok.pad_id}
    if isinstance(tok, HFTokenizer):
        return {"format": FORMAT, "kind": "hf", "pad_id": tok.pad_id, "vocab_size": tok.vocab_size,
                "tokenizer": json.loads(tok.tokenizer.to_str())}
    raise TypeError(f"cannot save a {type(tok).__name__}; expected a ByteTokenizer or an HFTokenizer")


def save_tokenizer(tok, folder) -> Path:
    """Writes ``folder/tokenizer.json`` (see the module docstring); returns it."""
    from mambatune.core.atomic import atomic_write_json

    path = Path(folder) / TOKENIZER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, tokenizer_spec(tok))
    return path


def read_spec(path) -> dict | None:
    """The JSON object of a tokenizer file (``path`` or ``path/tokenizer.json``); None when there is none.
    A Hugging Face tokenizer.json comes back as ``{"kind": "hf", "tokenizer": ...}`` without pad / size."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TokenizerMismatchError(f"{path} is not readable JSON ({err}); restore it from the run that wrote it"
                                     ) from None
    if not isinstance(spec, dict):
        raise TokenizerMismatchError(f"{path}: expected a JSON object, got {type(spec).__name__}")
    if spec.get("format") == FORMAT:
        return spec
    if "model" in spec and ("added_tokens" in spec or "pre_tokenizer" in spec):  # a Hugging Face tokenizer.json
        return {"format": FORMAT, "kind": "hf", "tokenizer": spec}
    raise TokenizerMismatchError(f"{path} is neither a {FORMAT} file nor a Hugging Face tokenizer.json")


def tokenizer_from_spec(spec: dict, where: str = "tokenizer.json"):
    kind = spec.get("kind")
    if kind == "byte":
        tok = ByteTokenizer()
        if not same_ids(spec, tokenizer_spec(tok)):
            raise TokenizerMismatchError(
                f"{where}: a byte tokenizer with offset {spec.get('offset')} and specials {spec.get('specials')}; the "
                f"documents byte tokenizer has offset {tok.OFFSET} and specials {tokenizer_spec(tok)['specials']}, "
                "so its ids differ (a model of the generic pipeline?). Use that pipeline, or a documents model")
        return tok
    if kind == "hf":
        from tokenizers import Tokenizer

        inner = Tokenizer.from_str(json.dumps(spec["tokenizer"]))
        pad = spec.get("pad_id")
        tok = HFTokenizer(inner) if pad is None else HFTokenizer(inner, pad_token=inner.id_to_token(int(pad)))
        return tok
    raise TokenizerMismatchError(f"{where}: tokenizer kind {kind!r} is not a text tokenizer (byte or hf); this "
                                 "checkpoint belongs to another domain's recipes")


def load_tokenizer(path):
    """A tokenizer from ``path``: our tokenizer.json, a Hugging Face one, or a folder holding either."""
    spec = read_spec(path)
    if spec is None:
        from .tokenizers import GET_TOKENIZER_JSON
        raise FileNotFoundError(f"no tokenizer.json at {path}. {GET_TOKENIZER_JSON}")
    return tokenizer_from_spec(spec, str(path))


def describe(spec: dict) -> str:
    if spec.get("kind") == "byte":
        return f"byte (offset {spec.get('offset')}, specials {spec.get('specials')})"
    if spec.get("kind") == "hf":
        vocab = (spec.get("tokenizer") or {}).get("model", {}).get("vocab")
        return f"Hugging Face {spec['tokenizer'].get('model', {}).get('type', '?')} ({len(vocab or {})} tokens)"
    return f"{spec.get('kind')!r}"


def same_ids(a: dict, b: dict) -> bool:
    """Whether two specs give every text the same ids (and the same padding id)."""
    if a.get("kind") != b.get("kind"):
        return False
    if a["kind"] == "byte":  # the offset defines the ids; specials and size are compared where both files give them
        optional = ("specials", "vocab_size")
        return a.get("offset", 1) == b.get("offset", 1) and all(
            a.get(k) == b.get(k) for k in optional if a.get(k) is not None and b.get(k) is not None)
    ta, tb = a.get("tokenizer") or {}, b.get("tokenizer") or {}
    parts = ("model", "normalizer", "pre_tokenizer", "added_tokens")
    pads = a.get("pad_id"), b.get("pad_id")
    return all(ta.get(k) == tb.get(k) for k in parts) and (None in pads or pads[0] == pads[1])


def check_tokenizer(tok, model_dir, recipe_key: str = "data.tokenizer") -> dict | None:
    """Raises :class:`TokenizerMismatchError` when ``model_dir`` holds a tokenizer.json whose ids differ from
    ``tok``'s; returns the checkpoint's spec (None: the checkpoint has no tokenizer file)."""
    saved = read_spec(model_dir)
    if saved is None:
        return None
    ours = tokenizer_spec(tok)
    if not same_ids(saved, ours):
        raise TokenizerMismatchError(
            f"the pretrained model {model_dir} was trained with the tokenizer in {Path(model_dir) / TOKENIZER_FILE}: "
            f"{describe(saved)}; {recipe_key} gives {describe(ours)}, whose ids mean other things. Set "
            f"{recipe_key}={Path(model_dir) / TOKENIZER_FILE} (or `byte` for a byte model), or pick a model "
            "trained with your tokenizer; ids are never remapped")
    return saved
