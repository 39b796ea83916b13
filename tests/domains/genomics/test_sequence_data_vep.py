"""Model-side genomics pieces: window datasets, RC augmentation and averaging, VEP scoring."""
import numpy as np
import pytest
import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.domains.genomics import DNATokenizer, reverse_complement
from mambatune.domains.genomics.sequence_data import (
    DNAWindowDataset, center_crop, collate_windows, pooled_features, predict_logits,
)
from mambatune.domains.genomics.vep import (
    MarkovLM, VariantPairClassifier, VariantPairDataset, collate_pairs, haplotype_windows, lm_log_likelihood_ratio,
    pair_features, variant_pairs,
)

TOK = DNATokenizer()


def tiny(head=None):
    torch.manual_seed(0)
    cfg = MambaConfig(d_model=8, n_layer=1, d_state=4, vocab_size=TOK.vocab_size, pad_token_id=0)
    return MambaForTask(cfg, head if head is None else build_head("classification", 8, num_labels=2)).eval()


def test_center_crop_keeps_the_centre():
    seq = "AAAAC" + "G" + "TTTTT"
    assert center_crop(seq, 3) == "CGT"
    assert center_crop(seq, 4)[4 // 2] == "G"
    assert center_crop(seq, None) == seq and center_crop(seq, 100) == seq
    with pytest.raises(ValueError):
        center_crop(seq, 0)


def test_dataset_rc_augmentation_draws_both_strands():
    seq = "AACCGGTTAC"
    data = DNAWindowDataset([seq], [1], TOK, rc_augment=True)
    torch.manual_seed(0)
    seen = {TOK.decode(data[0]["input_ids"]) for _ in range(40)}
    assert seen == {seq, reverse_complement(seq)}
    assert int(data[0]["labels"]) == 1
    plain = DNAWindowDataset([seq], [1], TOK)
    assert TOK.decode(plain[0]["input_ids"]) == seq


def test_dataset_errors():
    with pytest.raises(ValueError, match="no sequences"):
        DNAWindowDataset([], [])
    with pytest.raises(ValueError, match="labels"):
        DNAWindowDataset(["ACGT"], [0, 1])
    with pytest.raises(ValueError, match="no label"):
        DNAWindowDataset(["ACGT", "ACGT"], [0, None])
    with pytest.raises(ValueError, match="non-DNA"):
        DNAWindowDataset(["ACGU"], [0])


def test_collate_pads_right_and_lm_labels():
    data = DNAWindowDataset(["ACGTA", "AC"], tokenizer=TOK, lm=True)
    batch = collate_windows([data[0], data[1]])
    assert batch["input_ids"].shape == (2, 5) and batch["attention_mask"][1].tolist() == [1, 1, 0, 0, 0]
    assert torch.equal(batch["labels"], batch["input_ids"])


def test_rc_averaged_logits_are_strand_invariant():
    model = MambaForTask(MambaConfig(d_model=8, n_layer=1, d_state=4, vocab_size=TOK.vocab_size, pad_token_id=0),
                         build_head("classification", 8, num_labels=2)).eval()
    seqs = ["ACGTTGCAAGT", "GGGCCATA"]
    fwd = predict_logits(model, DNAWindowDataset(seqs, [0, 1], TOK))
    rev = predict_logits(model, DNAWindowDataset([reverse_complement(s) for s in seqs], [0, 1], TOK))
    torch.testing.assert_close(fwd, rev, atol=1e-5, rtol=1e-5)
    one = predict_logits(model, DNAWindowDataset(seqs, [0, 1], TOK), rc_average=False)
    assert not torch.allclose(one, fwd)
    feats = pooled_features(model.backbone, DNAWindowDataset(seqs, [0, 1], TOK))
    assert feats.shape == (2, 8)


def test_llr_is_zero_for_identical_windows_and_antisymmetric():
    lm = tiny()
    ref = ["ACGTACGTTTGACA"]
    alt = ["ACGTACGATTGACA"]
    assert np.allclose(lm_log_likelihood_ratio(lm, ref, ref, TOK), 0.0)
    forward = lm_log_likelihood_ratio(lm, ref, alt, TOK)
    backward = lm_log_likelihood_ratio(lm, alt, ref, TOK)
    assert np.allclose(forward, -backward, atol=1e-5) and forward[0] != 0
    with pytest.raises(ValueError, match="causal language model"):
        lm_log_likelihood_ratio(tiny(head=True), ref, alt, TOK)


def test_variant_pairs_put_alt_at_the_centre():
    window = "AAAAACTTTTT"  # C at the centre (index 5)
    refs, alts = variant_pairs([window], ["C"], ["G"], crop=5)
    assert refs == ["AACTT"] and alts == ["AAGTT"]
    with pytest.raises(ValueError, match="does not match"):
        variant_pairs([window], ["A"], ["G"])


def test_haplotype_windows_are_equal_length_for_every_variant_kind():
    wide = "ACGTACGTAC" + "G" + "TTAGGCATCAGT"  # the variant's REF starts at offset 10
    # an SNV: the same windows as cropping the centred window
    r, a = haplotype_windows(wide, 10, "G", "C", 7)
    assert (r, a) == ("TACGTTA", "TACCTTA")
    centred = wide[10 - 10:10 + 11]
    assert variant_pairs([centred], ["G"], ["C"], crop=7) == ([r], [a])
    # a deletion (anchor G, TT deleted): the alt window goes on with the bases after the deleted ones
    r, a = haplotype_windows(wide, 10, "GTT", "G", 7)
    assert (r, a) == ("TACGTTA", "TACGAGG") and len(r) == len(a) == 7
    # an insertion (anchor G, CCC inserted): the inserted bases push the right flank out
    r, a = haplotype_windows(wide, 10, "G", "GCCC", 9)
    assert (r, a) == ("GTACGTTAG", "GTACGCCCT")
    assert r[:5] == a[:5]  # the shared left flank and anchor
    with pytest.raises(ValueError, match="does not match"):
        haplotype_windows(wide, 10, "A", "G", 7)
    with pytest.raises(ValueError, match="bases before the variant"):
        haplotype_windows(wide, 2, wide[2], "T", 9)


def test_markov_lm_prefers_seen_sequences():
    m = MarkovLM(2).fit(["ACGACGACGACGACGACG"])
    llr = m.log_likelihood_ratio(["ACGACGACG"], ["ACGATGACG"])
    assert llr[0] < 0


def test_pair_classifier_trains_and_features():
    refs, alts = variant_pairs(["ACGTACGTACG", "TTGACCAGTAA"], ["C", "C"], ["T", "G"])
    data = VariantPairDataset(refs, alts, [0, 1], TOK, rc_augment=True)
    batch = collate_pairs([data[0], data[1]])
    assert batch["input_ids"].shape == (2, 2, 11)
    model = VariantPairClassifier(tiny().backbone, radius=2)
    out = model(**batch)
    out.loss.backward()
    assert out.logits.shape == (2, 2) and model.head.proj.weight.grad is not None
    feats = pair_features(tiny().backbone, refs, alts, TOK, radius=2)
    assert feats.shape == (2, 16)
    with pytest.raises(ValueError, match="batch, 2, L"):
        model(batch["input_ids"][:, 0])
