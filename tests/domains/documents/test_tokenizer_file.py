"""tokenizer.json beside a text checkpoint: byte and Hugging Face tokenizers round-trip, the generic
pipeline's byte file (offset 4) is ours, and any difference in ids is a mismatch."""
import json

import pytest

from mambatune.domains.documents import ByteTokenizer, HFTokenizer
from mambatune.domains.documents.tokenizer_file import (
    TokenizerMismatchError, check_tokenizer, load_tokenizer, save_tokenizer, tokenizer_spec,
)


def word_level(words):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["<|padding|>", "[UNK]"]))
    return HFTokenizer(tok)


def test_byte_round_trip_and_the_generic_pipelines_file(tmp_path):
    path = save_tokenizer(ByteTokenizer(), tmp_path / "m")
    spec = json.loads(path.read_text())
    assert spec["format"] == "mambatune-tokenizer" and spec["offset"] == 4 and spec["specials"]["pad"] == 0
    assert isinstance(load_tokenizer(tmp_path / "m"), ByteTokenizer)
    check_tokenizer(ByteTokenizer(), tmp_path / "m")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "tokenizer.json").write_text(json.dumps({"format": "mambatune-tokenizer", "kind": "byte",
                                                               "offset": 4}))
    check_tokenizer(ByteTokenizer(), tmp_path / "g")  # the generic pipeline's byte ids are ours
    assert check_tokenizer(ByteTokenizer(), tmp_path / "none") is None  # no file: nothing to compare


def test_hf_round_trip_and_mismatches(tmp_path):
    tok = word_level(["permission is hereby granted", "the software is provided"])
    save_tokenizer(tok, tmp_path / "hf")
    again = load_tokenizer(tmp_path / "hf" / "tokenizer.json")
    assert again.encode("permission is granted") == tok.encode("permission is granted") and again.pad_id == tok.pad_id
    check_tokenizer(again, tmp_path / "hf")
    with pytest.raises(TokenizerMismatchError, match="Hugging Face WordLevel"):
        check_tokenizer(ByteTokenizer(), tmp_path / "hf")
    other = word_level(["a different corpus entirely"])
    with pytest.raises(TokenizerMismatchError, match="never remapped"):
        check_tokenizer(other, tmp_path / "hf")
    save_tokenizer(ByteTokenizer(), tmp_path / "b")
    with pytest.raises(TokenizerMismatchError, match="byte"):
        check_tokenizer(tok, tmp_path / "b")
    assert tokenizer_spec(tok)["kind"] == "hf"


def test_not_a_tokenizer_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"format": "mambatune-tokenizer", "kind": "dna", "k": 1}))
    with pytest.raises(TokenizerMismatchError, match="not a text tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerMismatchError, match="not readable JSON"):
        load_tokenizer(tmp_path)
