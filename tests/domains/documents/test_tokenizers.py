"""Byte and Hugging Face tokenizers: specials, invalid UTF-8, padding, truncation and chunking."""
import pytest
import torch

from mambatune.domains.documents.tokenizers import ByteTokenizer, HFTokenizer, fit_length, pool_chunks


def test_byte_roundtrip_and_specials():
    tok = ByteTokenizer(add_bos=True, add_eos=True)
    ids = tok.encode("Licence – é")
    assert ids[0] == tok.BOS and ids[-1] == tok.EOS
    assert all(tok.OFFSET <= i < tok.vocab_size for i in ids[1:-1])
    assert tok.decode(ids) == "Licence – é"
    assert tok.count_tokens("Licence – é") == len(ids)


def test_byte_tokenizer_takes_invalid_utf8_bytes_and_counts_replacements():
    tok = ByteTokenizer()
    raw = b"ok \xff\xfe end \xef\xbf\xbd"  # two invalid bytes, then a genuine U+FFFD
    ids = tok.encode(raw)
    assert len(ids) == len(raw) and tok.decode_bytes(ids) == raw
    text, n_replaced = tok.decode_with_report(ids)
    assert n_replaced == 2 and text.count("\ufffd") == 3


def test_batch_padding_and_mask():
    tok = ByteTokenizer()
    batch = tok.encode_batch(["abc", "a", "abcdef"], pad_to_multiple_of=4)
    assert batch.input_ids.shape == (3, 8)
    assert batch.attention_mask.sum(1).tolist() == [3, 1, 6] == batch.lengths.tolist()
    assert (batch.input_ids[batch.attention_mask == 0] == tok.pad_id).all()
    assert batch.doc_index.tolist() == [0, 1, 2]


def test_truncation_is_counted():
    batch = ByteTokenizer().encode_batch(["x" * 10, "y" * 3, "z" * 7], max_length=5)
    assert batch.input_ids.shape == (3, 5)
    assert batch.n_truncated == 2 and batch.n_tokens_dropped == 5 + 2
    assert batch.report["n_truncated"] == 2


def test_overflow_error_names_the_document():
    with pytest.raises(ValueError, match="document 1 has 9 tokens"):
        ByteTokenizer().encode_batch(["ok", "too long!"], max_length=4, overflow="error")
    with pytest.raises(ValueError, match="overflow="):
        ByteTokenizer().encode_batch(["ok"], overflow="drop")


@pytest.mark.parametrize("n,max_length,stride", [(10, 4, 0), (11, 4, 2), (4, 4, 1), (1000, 64, 16)])
def test_chunks_cover_every_token_once_per_window(n, max_length, stride):
    ids = list(range(n))
    rows, rep = fit_length([ids], max_length, "chunk", stride)
    assert all(len(r) <= max_length for r in rows)
    assert rows[0][0] == 0 and rows[-1][-1] == n - 1
    covered = set()
    for r in rows:
        covered.update(r)
    assert covered == set(ids)
    assert rep.n_chunked == (n > max_length)


def test_chunk_and_pool():
    batch = ByteTokenizer().encode_batch(["a" * 10, "bb", "c" * 5], max_length=4, overflow="chunk")
    assert batch.doc_index.tolist() == [0, 0, 0, 1, 2, 2]
    assert batch.n_chunked == 2
    values = torch.arange(6, dtype=torch.float32)[:, None].repeat(1, 2)
    mean = pool_chunks(values, batch.doc_index, 3)
    assert mean[:, 0].tolist() == [1.0, 3.0, 4.5]
    assert pool_chunks(values, batch.doc_index, 3, mode="max")[:, 1].tolist() == [2.0, 3.0, 5.0]
    with pytest.raises(ValueError, match="no chunk"):
        pool_chunks(values, batch.doc_index, 4)


@pytest.fixture
def tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<|endoftext|>", "<|padding|>", "[UNK]"])
    tok.train_from_iterator(["permission is hereby granted", "the software is provided as is"], trainer)
    path = tmp_path / "tok" / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    return path


def test_hf_tokenizer_from_local_file_and_folder(tokenizer_json):
    tok = HFTokenizer.from_file(tokenizer_json)
    assert tok.pad_id == 1  # <|padding|>, as in GPT-NeoX
    assert HFTokenizer.from_pretrained(tokenizer_json.parent).vocab_size == tok.vocab_size
    batch = tok.encode_batch(["permission is granted", "the software"], max_length=2)
    assert batch.input_ids.shape == (2, 2) and batch.n_truncated == 1
    assert tok.decode(tok.encode("the software")) == "the software"
    assert tok.encode(b"is \xff granted")  # bytes are decoded with replacement


def test_hf_tokenizer_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        HFTokenizer.from_file(tmp_path / "nothing" / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match="ByteTokenizer"):
        HFTokenizer.from_file(tmp_path)


def test_hf_tokenizer_unknown_pad_token(tokenizer_json):
    with pytest.raises(ValueError, match="pad_token"):
        HFTokenizer.from_file(tokenizer_json, pad_token="<nope>")


def test_hf_tokenizer_hub_name_offline_is_a_clear_error(monkeypatch):
    import tokenizers

    def offline(*args, **kwargs):
        raise RuntimeError("Name or service not known")

    monkeypatch.setattr(tokenizers.Tokenizer, "from_pretrained", offline)
    with pytest.raises(OSError, match="offline.*huggingface-cli download"):
        HFTokenizer.from_pretrained("state-spaces/mamba-130m-hf")
