"""Token ids of other DNA models, and adopting a loaded model to :class:`DNATokenizer`'s ids.

A checkpoint's embedding rows are indexed by the ids of the tokenizer it was
trained with. Caduceus' character tokenizer numbers its special tokens first
([CLS] 0, [EOS] 1, [SEP] 2, [REF] 3, [MUT] 4, [BOS] 5, [MASK] 6, [PAD] 7,
[RESERVED] 8, [UNK] 9) and the bases from 10 (A, C, G, T, N), while ours has
[PAD] 0 ... [UNK] 4 and A..N at 5..9. Feeding our ids to a Caduceus model would
silently read the wrong rows (our "A" is its [RESERVED]), so
:func:`adopt_vocabulary` permutes the embedding rows (and an untied LM head's
rows and the config's complement map) so that the model reads our ids.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .tokenizer import DNATokenizer

CADUCEUS_SPECIALS = ("[CLS]", "[EOS]", "[SEP]", "[REF]", "[MUT]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
CADUCEUS_CHARACTERS = ("A", "C", "G", "T", "N")
_PAIRS = (("A", "T"), ("C", "G"), ("N", "N"))


def caduceus_vocabulary(raw_config: dict, folder: str | Path | None = None) -> dict[str, int]:
    """Token -> id of a Caduceus checkpoint: its tokenizer's layout, with the characters of the folder's
    ``tokenizer_config.json`` when it lists them. Checked against the config's complement map (A <-> T,
    C <-> G, N -> N); a map that disagrees is an error rather than a silent misreading."""
    chars = list(CADUCEUS_CHARACTERS)
    if folder is not None and (Path(folder) / "tokenizer_config.json").is_file():
        listed = json.loads((Path(folder) / "tokenizer_config.json").read_text()).get("characters")
        if listed:
            chars = [str(c).upper() for c in listed]
    vocab = {tok: i for i, tok in enumerate(CADUCEUS_SPECIALS)}
    vocab.update({c: len(CADUCEUS_SPECIALS) + i for i, c in enumerate(chars)})
    missing = [b for b in "ACGT" if b not in vocab]
    if missing:
        raise ValueError(f"the Caduceus tokenizer of this checkpoint has no id for {', '.join(missing)}: "
                         f"its characters are {chars}")
    cmap = raw_config.get("complement_map")
    if cmap:
        comp = {int(k): int(v) for k, v in cmap.items()}
        wrong = [f"{a}->{b}" for a, b in _PAIRS if a in vocab and b in vocab
                 and comp.get(vocab[a], vocab[a]) != vocab[b]]
        if wrong:
            raise ValueError(
                f"this checkpoint's complement_map does not fit Caduceus' token ids ({', '.join(wrong)} "
                f"do not hold with A={vocab['A']}, C={vocab['C']}, G={vocab['G']}, T={vocab['T']}); add a "
                "tokenizer_config.json with its \"characters\" in id order to the folder")
    return vocab


def adopt_vocabulary(model, source: dict[str, int], tokenizer: DNATokenizer) -> dict[str, int]:
    """Permutes ``model``'s token rows (embedding, an untied LM head, the complement map) from the ids of
    ``source`` to ``tokenizer``'s, in place. Our tokens the source lacks read its [UNK] row. Returns
    {our token: source id}."""
    if tokenizer.k != 1:
        raise ValueError("a checkpoint with another tokenizer's vocabulary can only be read with k = 1 "
                         "(character) tokens; set data.k=1")
    ours = tokenizer.get_vocab()
    unk = source.get("[UNK]", 0)
    mapping = {tok: source.get(tok, unk) for tok in ours}
    backbone = model.backbone if hasattr(model, "backbone") else model
    emb = backbone.embedding.weight
    if max(mapping.values()) >= emb.shape[0] or len(ours) > emb.shape[0]:
        raise ValueError(f"the checkpoint's embedding has {emb.shape[0]} rows; its vocabulary needs "
                         f"{max(mapping.values()) + 1} and ours {len(ours)}")
    order = torch.arange(emb.shape[0])
    for tok, i in ours.items():
        order[i] = mapping[tok]
    with torch.no_grad():
        emb.copy_(emb[order.to(emb.device)].clone())
        head = getattr(model, "head", None)
        weight = getattr(head, "weight", None)
        if isinstance(weight, torch.nn.Parameter) and weight is not emb and weight.shape[0] == emb.shape[0]:
            weight.copy_(weight[order.to(weight.device)].clone())
    config = backbone.config
    if config.complement_map is not None:
        table = tokenizer._complement_ids.tolist()
        config.complement_map = table + list(range(len(table), config.vocab_size))
    config.pad_token_id = tokenizer.pad_id
    return mapping


def adopt_checkpoint_vocabulary(model, path: str | Path, tokenizer: DNATokenizer) -> dict[str, int] | None:
    """Makes a model loaded from ``path`` read ``tokenizer``'s ids when the checkpoint uses another DNA
    vocabulary (Caduceus); our own and other formats are left as they are. Returns the mapping or None."""
    from mambatune.core.checkpoints import load_config, resolve_path

    _, raw, fmt = load_config(path)
    if fmt != "caduceus":
        return None
    return adopt_vocabulary(model, caduceus_vocabulary(raw, resolve_path(path)), tokenizer)


def checkpoint_tokenizer(path: str | Path, k: int = 1) -> DNATokenizer:
    """The tokenizer a DNA recipe feeds the checkpoint at ``path``: the one saved beside its weights
    (``tokenizer.json``, see :meth:`DNATokenizer.save`) when there is one, else ``DNATokenizer(k)``. A
    saved tokenizer of another kind (text bytes, ...) or another ``k`` than the recipe asks for is a
    :class:`~.tokenizer.TokenizerMismatchError`: the ids would mean other tokens, and they are never remapped."""
    from .tokenizer import TokenizerMismatchError

    folder = Path(path)
    saved = DNATokenizer.load(folder) if folder.is_dir() else None
    if saved is None:
        return DNATokenizer(k)
    if saved.k != k:
        raise TokenizerMismatchError(
            f"{folder} was trained on DNA tokens of k={saved.k} (its tokenizer.json) but the recipe asks for "
            f"k={k}: set data.k={saved.k} to use this model, or pick a model trained with k={k} (or "
            "model.pretrained=null to train one from scratch)")
    return saved
