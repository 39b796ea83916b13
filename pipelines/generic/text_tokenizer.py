"""Tokenizers of the generic sequence-classification pipeline: bytes, characters or DNA bases.

Id 0 is padding in each. ``byte``: byte b is id ``b + 4`` (the ids of
``domains.documents.ByteTokenizer``, so the shipped byte-level text models read them;
run folders written before 2026-12 used ``b + 1`` and say so with ``"offset": 1``).
``char``: 1 = unknown, then one id per character seen in the training texts.
``dna``: ``domains.genomics.DNATokenizer``'s ids (A C G T N = 5..9 for k = 1).

The tokenizer travels with the checkpoint: a pretrained model folder that holds a
``tokenizer.json`` of format ``mambatune-tokenizer`` decides the tokenizer
(:func:`for_checkpoint`); asking for another one is an error, never a silent remap.
"""
from __future__ import annotations

import json
from pathlib import Path

from mambatune.core.atomic import atomic_write_json

KINDS = ("byte", "char", "dna")
FORMAT = "mambatune-tokenizer"
FILE = "tokenizer.json"
BYTE_OFFSET = 4


class TokenizerError(ValueError):
    """A tokenizer that does not fit the model or the data."""


class TextTokenizer:
    pad_id = 0

    def __init__(self, kind: str = "byte", chars: list[str] | None = None, offset: int = BYTE_OFFSET, k: int = 1):
        if kind not in KINDS:
            raise TokenizerError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")
        if kind == "char" and chars is None:
            raise TokenizerError("a char tokenizer needs its characters; build it with TextTokenizer.fit(texts)")
        self.kind, self.offset, self.k = kind, offset, k
        self.chars = chars or []
        self.index = {c: i + 2 for i, c in enumerate(self.chars)}
        self.dna = None
        if kind == "dna":
            from mambatune.domains.genomics import DNATokenizer
            self.dna = DNATokenizer(k)

    @classmethod
    def fit(cls, kind: str, texts) -> "TextTokenizer":
        if kind == "char":
            return cls("char", sorted({c for t in texts for c in t}))
        return cls(kind)

    @property
    def vocab_size(self) -> int:
        if self.kind == "byte":
            return 256 + self.offset
        if self.kind == "dna":
            return self.dna.vocab_size
        return len(self.chars) + 2

    def encode(self, text: str, name: str = "sequence") -> list[int]:
        """Every token id of ``text`` (never cut: the caller counts and applies max_length)."""
        if self.kind == "byte":
            ids = [b + self.offset for b in text.encode("utf-8")]
        elif self.kind == "dna":
            ids = self.dna.encode(text.strip(), name=name) if text.strip() else []
        else:
            ids = [self.index.get(c, 1) for c in text]
        return ids or [self.pad_id + 1]

    def spec(self) -> dict:
        out = {"format": FORMAT, "kind": self.kind}
        if self.kind == "byte":
            out["offset"] = self.offset
        elif self.kind == "char":
            out["chars"] = self.chars
        else:
            out.update(k=self.k, vocab=self.dna.get_vocab())
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.spec())

    @classmethod
    def from_spec(cls, d: dict, where: str) -> "TextTokenizer":
        kind = d.get("kind")
        if kind == "byte":
            return cls("byte", offset=int(d.get("offset", 1)))  # files without an offset predate offset 4
        if kind == "char":
            return cls("char", list(d.get("chars") or []))
        if kind == "dna":
            tok = cls("dna", k=int(d.get("k", 1)))
            saved = {str(t): int(i) for t, i in (d.get("vocab") or tok.dna.get_vocab()).items()}
            if saved != tok.dna.get_vocab():
                raise TokenizerError(f"{where}: the saved DNA vocabulary differs from DNATokenizer(k={tok.k})'s; "
                                     "the model's ids are not remapped")
            return tok
        raise TokenizerError(f"{where}: tokenizer kind {kind!r} is not one of {', '.join(KINDS)}")

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        return cls.from_spec(json.loads(Path(path).read_text()), str(path))

    def __repr__(self) -> str:
        return f"TextTokenizer({self.kind}, vocab_size={self.vocab_size})"


def checkpoint_spec(folder: str | Path) -> dict | None:
    """The ``mambatune-tokenizer`` spec saved beside a model (None when the folder has no tokenizer.json).
    A Hugging Face tokenizer.json is reported as such (kind ``hf``)."""
    path = Path(folder) / FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except ValueError as err:
        raise TokenizerError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        return {"kind": "hf", "path": str(path)}
    return spec


def for_checkpoint(requested: str | None, folder: str | Path | None, texts) -> tuple[TextTokenizer, str]:
    """The tokenizer for a run: the pretrained model's own (``folder``'s tokenizer.json) when it has one,
    else ``requested`` (null: byte). Returns (tokenizer, a line for the log saying where it came from)."""
    spec = checkpoint_spec(folder) if folder is not None else None
    if spec is not None:
        where = str(Path(folder) / FILE)
        if spec["kind"] == "hf":
            raise TokenizerError(
                f"{where} is a Hugging Face tokenizer (subword ids); the generic recipe reads byte, char or DNA "
                "tokens. Use the documents recipes, which take it as data.tokenizer=<that file>")
        tok = TextTokenizer.from_spec(spec, where)
        if requested is not None and requested != tok.kind:
            raise TokenizerError(
                f"data.tokenizer={requested} but the pretrained model {folder} was trained on {tok.kind} tokens "
                f"({where}); its ids would mean other things. Remove data.tokenizer (the model's own is used) "
                "or pick a model trained on that tokenizer")
        return tok, f"tokenizer: {tok.kind}, from the pretrained model ({where})"
    if folder is not None:
        if requested in ("char", "dna"):
            raise TokenizerError(
                f"the pretrained model {folder} has no tokenizer.json, so which ids it was trained on is unknown; "
                f"data.tokenizer={requested} would number the tokens its own way. Add the model's tokenizer.json "
                "(format mambatune-tokenizer) to the folder, or train from scratch (model.pretrained=null)")
        return TextTokenizer("byte"), (f"tokenizer: byte (ids b + {BYTE_OFFSET}); the pretrained model {folder} "
                                       "has no tokenizer.json, so byte ids are assumed")
    kind = requested or "byte"
    return TextTokenizer.fit(kind, texts), f"tokenizer: {kind} (a new model)"
