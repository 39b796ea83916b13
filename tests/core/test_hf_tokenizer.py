"""Tokenizer specs written as Hugging Face tokenizer files give the same ids in transformers."""
import pytest

from mambatune.core.hf_tokenizer import TokenizerExportError, save_hf_tokenizer

transformers = pytest.importorskip("transformers")

DNA_VOCAB = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3, "[UNK]": 4, "A": 5, "C": 6, "G": 7, "T": 8, "N": 9}


def load(spec, tmp_path):
    save_hf_tokenizer(spec, tmp_path)
    return transformers.AutoTokenizer.from_pretrained(tmp_path)


def test_dna(tmp_path):
    tok = load({"format": "mambatune-tokenizer", "kind": "dna", "k": 1, "vocab": DNA_VOCAB}, tmp_path)
    assert tok("ACGTN")["input_ids"] == [5, 6, 7, 8, 9]
    assert tok("acgtn")["input_ids"] == [5, 6, 7, 8, 9]  # soft-masked bases are the same bases
    assert tok("AcRy")["input_ids"] == [5, 6, 9, 9]  # IUPAC codes are N
    assert tok.pad_token_id == 0 and tok.decode([5, 6, 9]).replace(" ", "") == "ACN"
    again = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert again("ggat")["input_ids"] == [7, 7, 5, 8]


def test_dna_kmers_are_refused(tmp_path):
    with pytest.raises(TokenizerExportError, match="k=3"):
        save_hf_tokenizer({"kind": "dna", "k": 3, "vocab": DNA_VOCAB}, tmp_path)


def test_byte(tmp_path):
    tok = load({"format": "mambatune-tokenizer", "kind": "byte", "offset": 4}, tmp_path)
    for text in ["Hello, world", "  two  spaces\nand a line", "é ü 漢字 🙂", "\x00\x7f"]:
        assert tok(text)["input_ids"] == [b + 4 for b in text.encode("utf-8")], text
        assert tok.decode(tok(text)["input_ids"]) == text
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.cls_token_id) == (0, 1, 2, 3)
    assert len(tok) == 260


def test_byte_old_offset(tmp_path):
    tok = load({"kind": "byte", "offset": 1}, tmp_path)
    assert tok("ab")["input_ids"] == [98, 99] and tok.pad_token_id == 0


def test_char(tmp_path):
    tok = load({"kind": "char", "chars": [" ", "a", "b", "é"]}, tmp_path)
    assert tok("ab é")["input_ids"] == [3, 4, 2, 5]
    assert tok("abz")["input_ids"] == [3, 4, 1]  # an unseen character is 1, unknown
    assert tok.pad_token_id == 0 and tok.unk_token_id == 1


def test_embedded_hf_tokenizer_keeps_its_ids_and_pad(tmp_path):
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers

    inner = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "hello": 2, "world": 3}, unk_token="<unk>"))
    inner.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = load({"kind": "hf", "pad_id": 0, "tokenizer": json.loads(inner.to_str())}, tmp_path)
    assert tok("hello there world")["input_ids"] == [2, 1, 3] and tok.pad_token_id == 0
