import numpy as np
import pytest
import torch

from mambatune.domains.genomics.tokenizer import (
    CLS_ID, PAD_ID, SEP_ID, DNATokenizer, InvalidSequenceError, clean_sequence, reverse_complement,
)


def test_vocab_ids_are_stable():
    tok = DNATokenizer()
    assert tok.vocab_size == 10
    assert tok.get_vocab() == {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3, "[UNK]": 4,
                               "A": 5, "C": 6, "G": 7, "T": 8, "N": 9}
    six = DNATokenizer(k=6)
    assert six.vocab_size == 10 + 4**6 + 1
    assert six.encode("AAAAAA") == [10] and six.encode("TTTTTT") == [10 + 4**6 - 1]
    assert six.encode("AANAAA") == [six.n_kmer_id]


def test_lowercase_and_roundtrip():
    tok = DNATokenizer()
    ids, report = tok.encode("acgTN", return_report=True)
    assert ids == [5, 6, 7, 8, 9]
    assert report.soft_masked == 3 and report.n_bases == 1 and report.n_ambiguous == 0
    assert tok.decode(ids) == "ACGTN"


def test_iupac_codes_become_n_and_are_counted():
    tok = DNATokenizer()
    ids, report = tok.encode("ARYSwkmBDHVA", return_report=True)
    assert ids == [5] + [9] * 10 + [5]
    assert report.n_ambiguous == 10 and report.ambiguous["R"] == 1 and report.ambiguous["W"] == 1
    assert tok.ambiguity_counts["R"] == 1
    batch = tok.batch_encode(["ACGT", "ARRT"])
    assert batch["ambiguous"].tolist() == [0, 2]


@pytest.mark.parametrize("bad, shown", [("ACGU", "'U' at position 3"), ("AC GT", "' ' at position 2"),
                                        ("AC-T", "'-' at position 2"), ("ACé", "'é' at position 2")])
def test_non_dna_characters_are_named(bad, shown):
    with pytest.raises(InvalidSequenceError, match=shown):
        DNATokenizer().encode(bad)


def test_empty_sequence_is_an_error():
    with pytest.raises(InvalidSequenceError, match="empty"):
        DNATokenizer().encode("")
    with pytest.raises(InvalidSequenceError, match="empty"):
        clean_sequence("")
    with pytest.raises(InvalidSequenceError, match="sequence 1 is empty"):
        DNATokenizer().batch_encode(["ACGT", ""])


def test_batch_encode_pads_and_masks():
    tok = DNATokenizer()
    out = tok.batch_encode(["ACGT", "GA"], add_special_tokens=True, return_tensors="pt")
    assert out["input_ids"].tolist() == [[CLS_ID, 5, 6, 7, 8, SEP_ID], [CLS_ID, 7, 5, SEP_ID, PAD_ID, PAD_ID]]
    assert out["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    fixed = tok.batch_encode(["ACGT"], max_length=8, padding="max_length")
    assert fixed["input_ids"].shape == (1, 8) and isinstance(fixed["input_ids"], np.ndarray)
    with pytest.raises(InvalidSequenceError, match="max_length"):
        tok.batch_encode(["ACGTACGT"], max_length=4)
    assert tok.batch_encode(["ACGTACGT"], max_length=4, truncation=True)["input_ids"].tolist() == [[5, 6, 7, 8]]


def test_reverse_complement_string():
    assert reverse_complement("AACGTn") == "nACGTT"
    assert reverse_complement("ARY") == "RYT"


@pytest.mark.parametrize("k, overlapping", [(1, False), (3, True), (4, False)])
def test_reverse_complement_ids_match_encoding_of_rc(k, overlapping):
    tok = DNATokenizer(k=k, overlapping=overlapping)
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in (12, 8, 16)]
    batch = tok.batch_encode(seqs, add_special_tokens=True, return_tensors="pt")
    rc = tok.reverse_complement_ids(batch["input_ids"])
    expected = tok.batch_encode([reverse_complement(s) for s in seqs], add_special_tokens=True)["input_ids"]
    assert torch.equal(rc, torch.from_numpy(expected))
    assert np.array_equal(tok.reverse_complement_ids(expected), batch["input_ids"].numpy())  # involution
    assert tok.reverse_complement_ids(np.array(tok.encode(seqs[0]))).tolist() == tok.encode(reverse_complement(seqs[0]))


def test_kmer_modes():
    seq = "ACGTACGTAC"
    non = DNATokenizer(k=3)
    ids = non.encode(seq)
    assert len(ids) == 3 + 1  # three 3-mers + one single-base remainder
    assert non.decode(ids) == seq
    ov = DNATokenizer(k=3, overlapping=True)
    assert len(ov.encode(seq)) == len(seq) - 2
    assert ov.decode(ov.encode(seq)) == seq
    assert ov.decode(ov.encode("ACGNACGT")) == "ACGNACGT"
    with pytest.raises(InvalidSequenceError, match="fewer than k"):
        ov.encode("AC")
    with pytest.raises(ValueError, match="k must be"):
        DNATokenizer(k=0)
