"""DocumentDataset, label vocabularies (unseen labels), length limits, bucketing and class weights."""
import numpy as np
import polars as pl
import pytest
import torch

from mambatune.domains.documents import (UNSEEN_INDEX, ByteTokenizer, DocumentCollator, DocumentDataset,
                                         LabelVocabulary, LengthBucketSampler, class_weights, padding_fraction)
from mambatune.domains.documents.data import DocumentTable, LoadReport


def table(texts, labels, multi=False):
    dtype = pl.List(pl.String) if multi else pl.String
    frame = pl.DataFrame({"text": texts, "label": labels}, schema={"text": pl.String, "label": dtype})
    return DocumentTable(frame, multi, LoadReport("test"))


TRAIN = table(["aaaa", "bb", "cccccccccc", "d"], ["x", "y", "x", "z"])


def test_vocab_from_training_split():
    vocab = LabelVocabulary.from_table(TRAIN)
    assert vocab.labels == ["x", "y", "z"] and len(vocab) == 3 and "y" in vocab
    with pytest.raises(ValueError, match="duplicates"):
        LabelVocabulary(["a", "a"])


def test_items_and_collated_batch():
    ds = DocumentDataset(TRAIN, ByteTokenizer())
    assert ds.num_labels == 3 and len(ds) == 4
    item = ds[0]
    assert item["label"] == 0 and item["length"] == 4 and len(item["input_ids"]) == 1
    batch = DocumentCollator(pad_id=0)([ds[i] for i in range(4)])
    assert batch["input_ids"].shape == (4, 10)
    assert batch["labels"].tolist() == [0, 1, 0, 2]
    assert batch["attention_mask"].sum(1).tolist() == [4, 2, 10, 1]
    assert batch["doc_index"].tolist() == [0, 1, 2, 3]


def test_unseen_labels_error_by_default():
    test = table(["q", "r", "s"], ["x", "new", "newer"])
    vocab = LabelVocabulary.from_table(TRAIN)
    with pytest.raises(ValueError, match=r"2 labels never seen in training.*unseen='map'"):
        DocumentDataset(test, ByteTokenizer(), vocab=vocab)


def test_unseen_labels_mapped_and_counted():
    test = table(["q", "r", "s"], ["x", "new", "new"])
    ds = DocumentDataset(test, ByteTokenizer(), vocab=LabelVocabulary.from_table(TRAIN), unseen="map")
    assert ds.label_matrix().tolist() == [0, UNSEEN_INDEX, UNSEEN_INDEX]
    assert ds.report.n_unseen_documents == 2 and ds.report.unseen_labels == {"new": 2}


def test_unseen_labels_multi_label():
    train = table(["a", "b"], [["3", "6"], ["8"]], multi=True)
    test = table(["c", "d"], [["3", "P1-1"], []], multi=True)
    vocab = LabelVocabulary.from_table(train)
    with pytest.raises(ValueError, match="P1-1"):
        DocumentDataset(test, ByteTokenizer(), vocab=vocab)
    ds = DocumentDataset(test, ByteTokenizer(), vocab=vocab, unseen="map")
    assert ds.label_matrix().tolist() == [[1, 0, 0], [0, 0, 0]]
    assert ds.report.n_unseen_documents == 1 and ds.report.unseen_labels == {"P1-1": 1}
    batch = DocumentCollator(0)([ds[0], ds[1]])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (2, 3)


def test_documents_beyond_max_length_truncated_and_counted():
    ds = DocumentDataset(TRAIN, ByteTokenizer(), max_length=3)
    assert ds.report.n_truncated == 2 and ds.report.n_tokens_dropped == 1 + 7
    assert ds.lengths.tolist() == [3, 2, 3, 1] and ds.raw_lengths.tolist() == [4, 2, 10, 1]
    assert all(len(ds[i]["input_ids"][0]) <= 3 for i in range(4))


def test_documents_beyond_max_length_error_option():
    with pytest.raises(ValueError, match=r"2 documents exceed max_length=3 \(longest: document 2, 10 tokens\)"):
        DocumentDataset(TRAIN, ByteTokenizer(), max_length=3, overflow="error")


def test_documents_beyond_max_length_chunked():
    ds = DocumentDataset(TRAIN, ByteTokenizer(), max_length=4, overflow="chunk")
    assert ds.report.n_chunked == 1
    assert [len(r) for r in ds[2]["input_ids"]] == [4, 4, 2]
    batch = DocumentCollator(0)([ds[2], ds[1]])
    assert batch["doc_index"].tolist() == [0, 0, 0, 1] and batch["labels"].tolist() == [0, 1]


def test_bad_options():
    with pytest.raises(ValueError, match="unseen="):
        DocumentDataset(TRAIN, ByteTokenizer(), unseen="drop")
    with pytest.raises(ValueError, match="overflow="):
        DocumentDataset(TRAIN, ByteTokenizer(), overflow="cut")


def test_length_bucketing_cuts_padding_and_keeps_every_index():
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(6, 1.2, size=1000).astype(int) + 1
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    random_batches = [list(b) for b in np.array_split(rng.permutation(1000), 125)]
    assert padding_fraction(lengths, batches) < 0.5 * padding_fraction(lengths, random_batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert list(LengthBucketSampler(lengths, 8, seed=1)) == batches


def test_length_bucketing_token_budget():
    lengths = [100, 100, 100, 100, 5000, 10, 10]
    batches = LengthBucketSampler(lengths, batch_size=4, max_tokens=250, shuffle=False).batches()
    assert all(len(b) * max(lengths[i] for i in b) <= 250 or len(b) == 1 for b in batches)
    assert [4] in batches and sorted(i for b in batches for i in b) == list(range(7))


def test_sampler_feeds_a_dataloader():
    ds = DocumentDataset(TRAIN, ByteTokenizer())
    loader = torch.utils.data.DataLoader(ds, batch_sampler=LengthBucketSampler(ds.lengths, 2, seed=0),
                                         collate_fn=DocumentCollator(ds.tokenizer.pad_id))
    assert sum(b["labels"].numel() for b in loader) == 4


def test_class_weights_single_label():
    ds = DocumentDataset(TRAIN, ByteTokenizer())  # counts x=2, y=1, z=1
    w = class_weights(ds)
    assert torch.allclose(w, torch.tensor([4 / 6, 4 / 3, 4 / 3]))
    assert class_weights([0, 0, 0, 1], num_labels=3).tolist()[2] == 0.0
    assert class_weights([0, 0, 0, 1, -1], scheme="inverse_sqrt").mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="scheme"):
        class_weights(ds, scheme="focal")


def test_class_weights_multi_label_pos_weight():
    targets = np.array([[1, 0], [1, 0], [0, 1], [1, 0]])
    assert class_weights(targets).tolist() == pytest.approx([1 / 3, 3.0])
