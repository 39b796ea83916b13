"""DNA tokenizer: single bases or k-mers, specials, IUPAC handling, reverse complement.

Vocabulary (stable; ids never change for a given ``k``):

====  ==========  ===============================================
id    token       meaning
====  ==========  ===============================================
0     ``[PAD]``   padding (attention mask 0)
1     ``[CLS]``   start of sequence (also used as BOS)
2     ``[SEP]``   end of sequence (also used as EOS)
3     ``[MASK]``  masked position for masked-LM objectives
4     ``[UNK]``   unknown token (only produced by ``decode`` inputs)
5-9   A C G T N   single bases
10..  k-mers      ``k > 1`` only: the 4**k ACGT k-mers in lexicographic
                  order (``AA..A`` = 10), then one id for "any k-mer
                  containing N" (decodes to ``N * k``)
====  ==========  ===============================================

So ``vocab_size`` is 10 for ``k = 1`` and ``10 + 4**k + 1`` otherwise
(4,107 for ``k = 6``). With non-overlapping k-mers, a trailing remainder of
``len % k`` bases is encoded as single-base tokens.

Input rules: upper- and lower-case (soft-masked) A/C/G/T/N are accepted; the
IUPAC ambiguity codes R Y S W K M B D H V become N and are *counted* (see
:class:`SequenceReport`); any other character raises :class:`InvalidSequenceError`
naming the characters and their first positions.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
BASES = "ACGTN"
BASE_OFFSET = 5
KMER_OFFSET = 10
IUPAC_AMBIGUITY = "RYSWKMBDHV"
_ALLOWED = set(BASES + IUPAC_AMBIGUITY)

_COMPLEMENT = str.maketrans("ACGTNacgtnRYSWKMBDHVryswkmbdhv", "TGCANtgcanYRSWMKVHDByrswmkvhdb")
_INVALID = 255
_AMBIGUOUS = 5
# byte -> base code 0..4 (A C G T N), 5 = ambiguity code, 255 = not DNA
_BYTE_CODE = np.full(256, _INVALID, dtype=np.uint8)
for _i, _b in enumerate(BASES):
    _BYTE_CODE[ord(_b)] = _BYTE_CODE[ord(_b.lower())] = _i
for _b in IUPAC_AMBIGUITY:
    _BYTE_CODE[ord(_b)] = _BYTE_CODE[ord(_b.lower())] = _AMBIGUOUS


TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_FORMAT = "mambatune-tokenizer"


class InvalidSequenceError(ValueError):
    """A sequence that is empty or holds characters that are not DNA."""


class TokenizerMismatchError(ValueError):
    """A checkpoint's saved tokenizer that a DNA recipe cannot use as asked (never remapped)."""


@dataclass
class SequenceReport:
    """What cleaning changed in one sequence: its length, N count, IUPAC codes turned into N."""

    length: int
    n_bases: int
    soft_masked: int
    ambiguous: dict[str, int] = field(default_factory=dict)

    @property
    def n_ambiguous(self) -> int:
        return sum(self.ambiguous.values())


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string; case and IUPAC codes are preserved (R <-> Y, ...)."""
    return seq.translate(_COMPLEMENT)[::-1]


def _raise_invalid(seq: str, bad: list[int], name: str) -> None:
    first: dict[str, int] = {}
    for pos in bad:
        first.setdefault(seq[pos], pos)
    listed = ", ".join(f"{ch!r} at position {pos}" for ch, pos in list(first.items())[:10])
    raise InvalidSequenceError(
        f"{name} holds {len(bad)} non-DNA character(s): {listed}. Allowed: A C G T N "
        f"(any case) and IUPAC codes {' '.join(IUPAC_AMBIGUITY)} (mapped to N); "
        "remove whitespace, digits, gaps ('-', '.') and RNA 'U' before encoding."
    )


def clean_sequence(seq: str, name: str = "sequence") -> tuple[np.ndarray, SequenceReport]:
    """Validate ``seq`` and return its base codes (0..4 = A C G T N, uint8) and a report.

    Raises :class:`InvalidSequenceError` for an empty sequence or non-DNA characters.
    """
    if not isinstance(seq, str):
        raise InvalidSequenceError(f"{name}: expected a str, got {type(seq).__name__}")
    if not seq:
        raise InvalidSequenceError(f"{name} is empty; DNA sequences need at least one base")
    if not seq.isascii():
        _raise_invalid(seq, [i for i, ch in enumerate(seq) if ch.upper() not in _ALLOWED], name)
    raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    codes = _BYTE_CODE[raw]
    bad = np.flatnonzero(codes == _INVALID)
    if bad.size:
        _raise_invalid(seq, bad.tolist(), name)
    ambiguous: dict[str, int] = {}
    amb_pos = np.flatnonzero(codes == _AMBIGUOUS)
    if amb_pos.size:
        ambiguous = dict(Counter(seq[p].upper() for p in amb_pos.tolist()))
        codes = codes.copy()
        codes[amb_pos] = 4
    report = SequenceReport(
        length=int(raw.size),
        n_bases=int((codes == 4).sum()) - int(amb_pos.size),
        soft_masked=int((raw >= ord("a")).sum()),
        ambiguous=ambiguous,
    )
    return codes, report


class DNATokenizer:
    """Character (``k = 1``) or k-mer DNA tokenizer with a fixed, documented vocabulary.

    ``overlapping=True`` gives one token per position (``len - k + 1`` tokens);
    otherwise tokens step by ``k``. ``ambiguity_counts`` accumulates the IUPAC
    codes turned into N over every call, so nothing is changed silently.
    """

    def __init__(self, k: int = 1, overlapping: bool = False):
        if not isinstance(k, int) or not 1 <= k <= 8:
            raise ValueError(f"k must be an int in 1..8, got {k!r}")
        self.k = k
        self.overlapping = overlapping and k > 1
        self.ambiguity_counts: Counter[str] = Counter()
        self.n_kmer_id = KMER_OFFSET + 4**k if k > 1 else BASE_OFFSET + 4
        self.vocab_size = KMER_OFFSET + 4**k + 1 if k > 1 else KMER_OFFSET
        self.pad_id, self.cls_id, self.sep_id, self.mask_id, self.unk_id = (
            PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID,
        )
        self._complement_ids = self._build_complement_table()

    # ------------------------------------------------------------------ vocab
    def id_to_token(self, i: int) -> str:
        if 0 <= i < BASE_OFFSET:
            return SPECIAL_TOKENS[i]
        if BASE_OFFSET <= i < KMER_OFFSET:
            return BASES[i - BASE_OFFSET]
        if self.k > 1 and KMER_OFFSET <= i < self.n_kmer_id:
            j, chars = i - KMER_OFFSET, []
            for _ in range(self.k):
                chars.append("ACGT"[j % 4])
                j //= 4
            return "".join(reversed(chars))
        if self.k > 1 and i == self.n_kmer_id:
            return "N" * self.k
        return SPECIAL_TOKENS[UNK_ID]

    def get_vocab(self) -> dict[str, int]:
        return {self.id_to_token(i): i for i in range(self.vocab_size)}

    def _build_complement_table(self) -> np.ndarray:
        table = np.arange(self.vocab_size, dtype=np.int64)
        for b, c in zip("ACGTN", "TGCAN"):
            table[BASE_OFFSET + BASES.index(b)] = BASE_OFFSET + BASES.index(c)
        if self.k > 1:
            ids = np.arange(4**self.k)
            rc = np.zeros_like(ids)
            for _ in range(self.k):  # reverse the base-4 digits while complementing (x -> 3 - x)
                rc = rc * 4 + (3 - ids % 4)
                ids = ids // 4
            table[KMER_OFFSET:self.n_kmer_id] = KMER_OFFSET + rc
        return table

    # ----------------------------------------------------------------- encode
    def encode(self, seq: str, add_special_tokens: bool = False, return_report: bool = False,
               name: str = "sequence"):
        """Token ids (list of int) of one sequence; with ``return_report`` also its SequenceReport."""
        codes, report = clean_sequence(seq, name)
        self.ambiguity_counts.update(report.ambiguous)
        ids = self._codes_to_ids(codes, name)
        if add_special_tokens:
            ids = np.concatenate([[CLS_ID], ids, [SEP_ID]])
        ids = ids.astype(np.int64).tolist()
        return (ids, report) if return_report else ids

    def _codes_to_ids(self, codes: np.ndarray, name: str) -> np.ndarray:
        k = self.k
        if k == 1:
            return codes.astype(np.int64) + BASE_OFFSET
        if codes.size < k and self.overlapping:
            raise InvalidSequenceError(
                f"{name} has {codes.size} bases, fewer than k={k} needed for overlapping k-mers"
            )
        if self.overlapping:
            windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        else:
            n_full = codes.size // k
            windows = codes[: n_full * k].reshape(n_full, k)
        has_n = (windows == 4).any(axis=1)
        powers = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
        kmer = (np.minimum(windows, 3).astype(np.int64) * powers).sum(axis=1) + KMER_OFFSET
        kmer[has_n] = self.n_kmer_id
        if self.overlapping:
            return kmer
        tail = codes[(codes.size // k) * k:].astype(np.int64) + BASE_OFFSET
        return np.concatenate([kmer, tail])

    def batch_encode(
        self,
        seqs: Sequence[str],
        max_length: int | None = None,
        padding: str = "longest",
        truncation: bool = False,
        add_special_tokens: bool = False,
        return_tensors: str | None = "np",
    ) -> dict:
        """Encode and right-pad a batch.

        Returns ``input_ids`` and ``attention_mask`` (batch, length) as numpy
        (``"np"``), torch (``"pt"``) or lists (``None``), and ``ambiguous``
        (batch,): IUPAC codes turned into N per sequence. ``padding`` is
        ``"longest"`` or ``"max_length"``; sequences over ``max_length`` raise
        unless ``truncation=True``.
        """
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if len(seqs) == 0:
            raise InvalidSequenceError("batch_encode got an empty batch")
        encoded, ambiguous = [], []
        for i, s in enumerate(seqs):
            ids, report = self.encode(s, add_special_tokens, return_report=True, name=f"sequence {i}")
            if max_length is not None and len(ids) > max_length:
                if not truncation:
                    raise InvalidSequenceError(
                        f"sequence {i} encodes to {len(ids)} tokens > max_length={max_length}; "
                        "pass truncation=True or a larger max_length"
                    )
                ids = ids[: max_length - 1] + [SEP_ID] if add_special_tokens else ids[:max_length]
            encoded.append(ids)
            ambiguous.append(report.n_ambiguous)
        width = max_length if padding == "max_length" else max(len(x) for x in encoded)
        input_ids = np.full((len(encoded), width), PAD_ID, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        out = {"input_ids": input_ids, "attention_mask": mask, "ambiguous": np.asarray(ambiguous)}
        if return_tensors == "pt":
            import torch

            out = {key: torch.from_numpy(v) for key, v in out.items()}
        elif return_tensors is None:
            out = {key: v.tolist() for key, v in out.items()}
        elif return_tensors != "np":
            raise ValueError(f"return_tensors must be 'np', 'pt' or None, got {return_tensors!r}")
        return out

    # ----------------------------------------------------------------- decode
    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """The DNA string of token ids (list, numpy or torch 1-D).

        N-containing k-mers decode to N (lossy for ``k > 1``, by design of the vocabulary).
        """
        ids = [int(i) for i in np.asarray(ids).reshape(-1).tolist()]
        tokens = [self.id_to_token(i) for i in ids if not (skip_special_tokens and i < BASE_OFFSET)]
        if not self.overlapping or not tokens:
            return "".join(tokens)
        # base i is read from any N-free k-mer covering it; only bases covered by N-kmers alone stay N
        out = ["N"] * (len(tokens) + self.k - 1)
        for j, tok in enumerate(tokens):
            if len(tok) == self.k and "N" not in tok:
                out[j:j + self.k] = tok
        return "".join(out)

    # -------------------------------------------------------- reverse complement
    def reverse_complement_ids(self, ids):
        """Reverse complement of token ids (numpy or torch; 1-D or (batch, length)).

        Only base/k-mer tokens are reversed: specials and padding keep their
        places, so right padding stays right and [CLS]/[SEP] stay at the ends.
        The nucleotide tokens of a row must be contiguous. For non-overlapping
        k-mers the result decodes to the reverse complement; it equals
        ``encode(reverse_complement(seq))`` when the length is a multiple of k.
        """
        if type(ids).__module__.startswith("torch"):
            import torch

            squeeze = ids.ndim == 1
            x = ids[None] if squeeze else ids
            pos = torch.arange(x.shape[1], device=x.device)[None, :]
            is_base = x >= BASE_OFFSET
            first = torch.where(is_base, pos, x.shape[1]).min(dim=1, keepdim=True).values
            last = torch.where(is_base, pos, -1).max(dim=1, keepdim=True).values
            inside = (pos >= first) & (pos <= last)
            src = torch.where(inside, first + last - pos, pos)
            flipped = torch.gather(x, 1, src.expand_as(x))
            table = torch.as_tensor(self._complement_ids, device=x.device)
            out = torch.where(inside, table[flipped], x)
        else:
            ids = np.asarray(ids)
            squeeze = ids.ndim == 1
            x = ids[None] if squeeze else ids
            pos = np.arange(x.shape[1])[None, :]
            is_base = x >= BASE_OFFSET
            first = np.where(is_base, pos, x.shape[1]).min(axis=1, keepdims=True)
            last = np.where(is_base, pos, -1).max(axis=1, keepdims=True)
            inside = (pos >= first) & (pos <= last)
            src = np.where(inside, first + last - pos, pos)
            flipped = np.take_along_axis(x, src, axis=1)
            out = np.where(inside, self._complement_ids[flipped], x)
        return out[0] if squeeze else out

    # ------------------------------------------------------------ save / load
    def save(self, folder) -> Path:
        """Writes ``folder/tokenizer.json``: ``{"format": "mambatune-tokenizer", "kind": "dna", "k": k,
        "vocab": {token: id}}``, the ids the model beside it was trained on. Returns the file."""
        if self.overlapping:
            raise ValueError("overlapping k-mer tokenizers are not saved with checkpoints; use overlapping=False")
        from mambatune.core.atomic import atomic_write_json

        path = Path(folder) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"format": TOKENIZER_FORMAT, "kind": "dna", "k": self.k, "vocab": self.get_vocab()})
        return path

    @classmethod
    def load(cls, folder) -> "DNATokenizer | None":
        """The tokenizer saved in ``folder/tokenizer.json`` (None when the folder has none). A file of
        another format or kind, or a vocabulary that differs from this class's for its ``k``, raises
        :class:`TokenizerMismatchError`: a model is never fed ids it was not trained on."""
        import json

        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            return None
        try:
            spec = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise TokenizerMismatchError(f"{path} is not readable JSON ({err}); restore it from the run that "
                                         "wrote the checkpoint") from None
        if not isinstance(spec, dict) or spec.get("format") != TOKENIZER_FORMAT:
            raise TokenizerMismatchError(f"{path} is not a {TOKENIZER_FORMAT} file (format "
                                         f"{spec.get('format') if isinstance(spec, dict) else None!r})")
        if spec.get("kind") != "dna":
            raise TokenizerMismatchError(
                f"{path}: this checkpoint was trained with a {spec.get('kind')!r} tokenizer, not DNA tokens; a "
                "genomics recipe cannot read it (its ids mean other things). Use a DNA model (e.g. "
                "model.pretrained=dna-mamba-1m) or the recipe of that model's domain")
        k = spec.get("k")
        if not isinstance(k, int) or not 1 <= k <= 8:
            raise TokenizerMismatchError(f"{path}: k must be an integer in 1..8, got {k!r}")
        tok = cls(k)
        saved = {str(t): int(i) for t, i in (spec.get("vocab") or {}).items()}
        if saved != tok.get_vocab():
            differ = sorted(t for t in set(saved) | set(tok.get_vocab()) if saved.get(t) != tok.get_vocab().get(t))
            raise TokenizerMismatchError(
                f"{path}: the saved vocabulary differs from DNATokenizer(k={k})'s at {len(differ)} token(s) "
                f"({', '.join(differ[:6])}); this model's ids are not ours, and they are not remapped")
        return tok

    def __repr__(self) -> str:
        mode = "overlapping" if self.overlapping else "non-overlapping"
        return f"DNATokenizer(k={self.k}, {mode}, vocab_size={self.vocab_size})"
