"""Built-in tokenizers of the generic pipelines: bytes (UTF-8) or characters.

Id 0 is padding. ``byte``: id = byte + 1 (vocabulary 257, nothing to learn).
``char``: 1 = unknown, then one id per character seen in the training texts.
"""
from __future__ import annotations

import json
from pathlib import Path

KINDS = ("byte", "char")


class TextTokenizer:
    pad_id = 0

    def __init__(self, kind: str = "byte", chars: list[str] | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown tokenizer {kind!r}; choose one of {KINDS}")
        if kind == "char" and chars is None:
            raise ValueError("a char tokenizer needs its characters; build it with TextTokenizer.fit(texts)")
        self.kind = kind
        self.chars = chars or []
        self.index = {c: i + 2 for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, kind: str, texts) -> "TextTokenizer":
        if kind == "byte":
            return cls("byte")
        return cls("char", sorted({c for t in texts for c in t}))

    @property
    def vocab_size(self) -> int:
        return 257 if self.kind == "byte" else len(self.chars) + 2

    def encode(self, text: str, max_length: int) -> list[int]:
        if self.kind == "byte":
            ids = [b + 1 for b in text.encode("utf-8")]
        else:
            ids = [self.index.get(c, 1) for c in text]
        return (ids or [self.pad_id + 1])[:max_length]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": self.kind, "chars": self.chars}) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        d = json.loads(Path(path).read_text())
        return cls(d["kind"], d["chars"] or None)
