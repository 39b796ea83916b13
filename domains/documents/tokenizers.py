"""Tokenizers for long documents: a byte-level one that needs no files, and a
wrapper around a Hugging Face ``tokenizers`` ``tokenizer.json``.

Both share :class:`DocumentTokenizer`'s batch encoder, which pads, builds the
attention mask and handles documents longer than ``max_length`` in one of three
ways, always counted in the returned :class:`EncodedBatch`:

* ``overflow="truncate"``: keep the first ``max_length`` tokens;
* ``overflow="chunk"``: cut into windows of ``max_length`` tokens (optionally
  overlapping by ``stride``); ``doc_index`` maps each row back to its document,
  and :func:`pool_chunks` averages (or maxes) per-chunk outputs per document;
* ``overflow="error"``: raise, naming the longest document.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

OVERFLOW_MODES = ("truncate", "chunk", "error")

GET_TOKENIZER_JSON = (
    "Download it on a machine with internet access, e.g. "
    "`huggingface-cli download state-spaces/mamba-130m-hf tokenizer.json --local-dir DIR` "
    "(GPT-NeoX's tokenizer, used by the mamba-*-hf checkpoints), copy DIR here and pass "
    "its path; or use ByteTokenizer(), which needs no files."
)


@dataclass
class EncodedBatch:
    """A padded batch of token ids.

    input_ids: (rows, length) int64, right-padded with ``pad_id``.
    attention_mask: (rows, length) int64, 1 on real tokens.
    lengths: (rows,) int64, real tokens per row.
    doc_index: (rows,) int64, the document each row comes from (identity unless chunked).
    n_truncated: documents cut to ``max_length`` (``overflow="truncate"``).
    n_tokens_dropped: tokens removed by that truncation.
    n_chunked: documents split into more than one chunk (``overflow="chunk"``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: torch.Tensor
    doc_index: torch.Tensor
    n_truncated: int = 0
    n_tokens_dropped: int = 0
    n_chunked: int = 0

    @property
    def report(self) -> dict[str, int]:
        return {"rows": int(self.input_ids.shape[0]), "n_truncated": self.n_truncated,
                "n_tokens_dropped": self.n_tokens_dropped, "n_chunked": self.n_chunked}


@dataclass
class OverflowReport:
    """What :func:`fit_length` did to a list of documents."""

    n_truncated: int = 0
    n_tokens_dropped: int = 0
    n_chunked: int = 0
    longest: int = 0
    doc_index: list[int] = field(default_factory=list)


def fit_length(sequences: list[list[int]], max_length: int | None, overflow: str = "truncate",
               stride: int = 0) -> tuple[list[list[int]], OverflowReport]:
    """Apply the overflow policy to token lists; return the rows and a report.

    ``stride`` (chunk mode only) is the number of tokens consecutive chunks share.
    """
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow={overflow!r} is not one of {OVERFLOW_MODES}")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
    if not 0 <= stride < (max_length or 1 << 62):
        raise ValueError(f"stride must be in [0, max_length), got {stride} with max_length={max_length}")
    report = OverflowReport(longest=max((len(s) for s in sequences), default=0))
    rows: list[list[int]] = []
    for i, ids in enumerate(sequences):
        if max_length is None or len(ids) <= max_length:
            rows.append(list(ids))
            report.doc_index.append(i)
        elif overflow == "error":
            raise ValueError(
                f"document {i} has {len(ids)} tokens, more than max_length={max_length}; "
                "raise max_length, or pass overflow='truncate' (counted) or overflow='chunk'")
        elif overflow == "truncate":
            rows.append(list(ids[:max_length]))
            report.doc_index.append(i)
            report.n_truncated += 1
            report.n_tokens_dropped += len(ids) - max_length
        else:
            step = max_length - stride
            starts = range(0, max(len(ids) - stride, 1), step)
            for start in starts:
                rows.append(list(ids[start:start + max_length]))
                report.doc_index.append(i)
            report.n_chunked += 1
    return rows, report


def pad_rows(rows: list, pad_id: int, pad_to_multiple_of: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad token lists (or 1-D tensors) into (input_ids, attention_mask, lengths) tensors."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max()) if rows else 0
    if pad_to_multiple_of and width % pad_to_multiple_of:
        width += pad_to_multiple_of - width % pad_to_multiple_of
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
    attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return input_ids, attention_mask, lengths


def pool_chunks(values: torch.Tensor, doc_index: torch.Tensor, n_docs: int | None = None,
                mode: str = "mean") -> torch.Tensor:
    """Pool per-chunk values (chunks, ...) into per-document values (docs, ...).

    ``mode`` is ``"mean"`` or ``"max"``; every document must own at least one chunk.
    """
    n_docs = int(doc_index.max()) + 1 if n_docs is None else n_docs
    counts = torch.bincount(doc_index, minlength=n_docs)
    if (counts == 0).any():
        raise ValueError(f"documents {torch.nonzero(counts == 0).flatten().tolist()} have no chunk")
    shape = (n_docs, *values.shape[1:])
    index = doc_index.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    if mode == "mean":
        total = torch.zeros(shape, dtype=values.dtype, device=values.device).scatter_add(0, index, values)
        return total / counts.view(-1, *([1] * (values.dim() - 1))).to(values.dtype)
    if mode == "max":
        out = torch.full(shape, float("-inf"), dtype=values.dtype, device=values.device)
        return out.scatter_reduce(0, index, values, reduce="amax")
    raise ValueError(f"mode={mode!r} is not 'mean' or 'max'")


class DocumentTokenizer:
    """Shared batch encoding; subclasses define ``encode``, ``pad_id`` and ``vocab_size``."""

    pad_id: int
    vocab_size: int

    def encode(self, text: str | bytes) -> list[int]:
        raise NotImplementedError

    def count_tokens(self, text: str | bytes) -> int:
        """Token count of ``encode(text)``; subclasses may compute it without encoding."""
        return len(self.encode(text))

    def encode_batch(self, texts: list[str | bytes], max_length: int | None = None,
                     overflow: str = "truncate", stride: int = 0,
                     pad_to_multiple_of: int | None = None) -> EncodedBatch:
        """Encode, apply the overflow policy (see the module docstring) and pad."""
        rows, rep = fit_length([self.encode(t) for t in texts], max_length, overflow, stride)
        input_ids, attention_mask, lengths = pad_rows(rows, self.pad_id, pad_to_multiple_of)
        return EncodedBatch(input_ids, attention_mask, lengths,
                            torch.tensor(rep.doc_index, dtype=torch.long),
                            rep.n_truncated, rep.n_tokens_dropped, rep.n_chunked)


class ByteTokenizer(DocumentTokenizer):
    """UTF-8 bytes as tokens: ids 0..3 are pad/bos/eos/cls, byte b is id ``b + 4``.

    ``str`` input is encoded as UTF-8; ``bytes`` input is taken as is, so text
    that is not valid UTF-8 loses nothing. ``decode`` replaces invalid sequences
    with U+FFFD and :meth:`decode_with_report` says how many.
    """

    PAD, BOS, EOS, CLS = 0, 1, 2, 3
    OFFSET = 4
    vocab_size = 256 + OFFSET
    pad_id = PAD

    def __init__(self, add_bos: bool = False, add_eos: bool = False, add_cls: bool = False):
        self.add_bos, self.add_eos, self.add_cls = add_bos, add_eos, add_cls

    def _specials(self) -> int:
        return int(self.add_bos) + int(self.add_eos) + int(self.add_cls)

    def encode(self, text: str | bytes) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        ids = [self.BOS] if self.add_bos else []
        ids.extend(b + self.OFFSET for b in data)
        if self.add_eos:
            ids.append(self.EOS)
        if self.add_cls:
            ids.append(self.CLS)
        return ids

    def count_tokens(self, text: str | bytes) -> int:
        n = len(text.encode("utf-8")) if isinstance(text, str) else len(text)
        return n + self._specials()

    def decode_bytes(self, ids) -> bytes:
        return bytes(int(i) - self.OFFSET for i in ids if int(i) >= self.OFFSET)

    def decode_with_report(self, ids) -> tuple[str, int]:
        """(text, number of U+FFFD characters inserted for invalid UTF-8)."""
        data = self.decode_bytes(ids)
        text = data.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - data.count("\ufffd".encode("utf-8"))

    def decode(self, ids) -> str:
        return self.decode_with_report(ids)[0]


class HFTokenizer(DocumentTokenizer):
    """A Hugging Face ``tokenizers.Tokenizer`` loaded from a local tokenizer.json.

    ``pad_token`` defaults to the first of ``<|padding|>``, ``<pad>``, ``[PAD]``,
    ``<|endoftext|>`` that the vocabulary holds (GPT-NeoX has ``<|padding|>`` = 1).
    """

    PAD_CANDIDATES = ("<|padding|>", "<pad>", "[PAD]", "<|endoftext|>")

    def __init__(self, tokenizer, pad_token: str | None = None, add_special_tokens: bool = False):
        self.tokenizer = tokenizer
        self.add_special_tokens = add_special_tokens
        candidates = (pad_token,) if pad_token is not None else self.PAD_CANDIDATES
        pad_id = next((tokenizer.token_to_id(t) for t in candidates if tokenizer.token_to_id(t) is not None), None)
        if pad_id is None:
            raise ValueError(f"the tokenizer has none of the pad tokens {candidates}; pass pad_token=...")
        self.pad_id = int(pad_id)
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "HFTokenizer":
        """Load ``path`` (a tokenizer.json, or a folder holding one)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}. {GET_TOKENIZER_JSON}")
        return cls(Tokenizer.from_file(str(path)), **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs) -> "HFTokenizer":
        """A local file/folder, or a hub id (needs internet; a clear error offline)."""
        if Path(name_or_path).exists():
            return cls.from_file(name_or_path, **kwargs)
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_pretrained(str(name_or_path)), **kwargs)
        except Exception as err:
            raise OSError(f"could not fetch the tokenizer {name_or_path!r} from the Hugging Face hub "
                          f"(offline, or no such repository: {err}). {GET_TOKENIZER_JSON}") from err

    def encode(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self.tokenizer.encode(text, add_special_tokens=self.add_special_tokens).ids

    def encode_batch(self, texts, max_length=None, overflow="truncate", stride=0, pad_to_multiple_of=None):
        decoded = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else t for t in texts]
        encodings = self.tokenizer.encode_batch(decoded, add_special_tokens=self.add_special_tokens)
        rows, rep = fit_length([e.ids for e in encodings], max_length, overflow, stride)
        input_ids, attention_mask, lengths = pad_rows(rows, self.pad_id, pad_to_multiple_of)
        return EncodedBatch(input_ids, attention_mask, lengths,
                            torch.tensor(rep.doc_index, dtype=torch.long),
                            rep.n_truncated, rep.n_tokens_dropped, rep.n_chunked)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids if int(i) != self.pad_id])
