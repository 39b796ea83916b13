"""A Caduceus checkpoint (its tokenizer's ids: specials 0-9, A C G T N from 10) read with our DNA ids."""
import json

import pytest
import torch

from mambatune.core import MambaConfig, MambaForTask
from mambatune.core.checkpoints import load_pretrained
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.vocab import adopt_checkpoint_vocabulary, caduceus_vocabulary

from helpers import CADUCEUS_COMPLEMENT
from helpers import write_caduceus as _write


def write_caduceus(model: MambaForTask, folder, complement=CADUCEUS_COMPLEMENT, characters=None):
    _write(model, folder, complement=complement, strategy="add", characters=characters)


@pytest.fixture
def caduceus(tmp_path):
    cfg = MambaConfig(d_model=16, n_layer=1, vocab_size=16, d_state=4, bidirectional=True, residual_in_fp32=False)
    torch.manual_seed(0)
    src = MambaForTask(cfg).eval()
    write_caduceus(src, tmp_path)
    return src, tmp_path


def test_our_ids_read_the_checkpoints_rows_for_the_same_bases(caduceus):
    src, folder = caduceus
    tok = DNATokenizer()
    model = load_pretrained(folder).eval()
    mapping = adopt_checkpoint_vocabulary(model, folder, tok)
    assert {b: mapping[b] for b in "ACGTN"} == {"A": 10, "C": 11, "G": 12, "T": 13, "N": 14}
    emb, ref = model.backbone.embedding.weight, src.backbone.embedding.weight
    for base in "ACGTN":
        assert torch.equal(emb[tok.get_vocab()[base]], ref[10 + "ACGTN".index(base)])
    assert torch.equal(emb[tok.pad_id], ref[7]) and torch.equal(emb[tok.mask_id], ref[6])
    # the same sequence through both: our ids into the adopted model = Caduceus' ids into the original
    seq = "ACGTTGCAANGT"
    ours = torch.tensor([tok.encode(seq)])
    theirs = torch.tensor([[10 + "ACGTN".index(b) for b in seq]])
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(ours), src.backbone(theirs))
    assert model.config.complement_map[:10] == tok._complement_ids.tolist() and model.config.pad_token_id == 0


def test_tokenizer_characters_and_a_map_that_disagrees(tmp_path, caduceus):
    src, _ = caduceus
    (tmp_path / "other").mkdir()
    write_caduceus(src, tmp_path / "other", characters=["T", "G", "C", "A", "N"],
                   complement=CADUCEUS_COMPLEMENT)  # T 10 <-> A 13, G 11 <-> C 12: consistent
    assert caduceus_vocabulary(json.loads((tmp_path / "other" / "config.json").read_text()),
                               tmp_path / "other")["A"] == 13
    bad = {**CADUCEUS_COMPLEMENT, "10": 11, "11": 10}
    with pytest.raises(ValueError, match="complement_map does not fit"):
        caduceus_vocabulary({"complement_map": bad})


def test_our_own_checkpoints_are_left_alone(tmp_path):
    from mambatune.core.checkpoints import save_pretrained

    tok = DNATokenizer()
    model = MambaForTask(MambaConfig(d_model=8, n_layer=1, vocab_size=tok.vocab_size, d_state=4))
    save_pretrained(model, tmp_path)
    loaded = load_pretrained(tmp_path)
    before = loaded.backbone.embedding.weight.clone()
    assert adopt_checkpoint_vocabulary(loaded, tmp_path, tok) is None
    assert torch.equal(loaded.backbone.embedding.weight, before)


def test_a_promoter_recipe_fine_tunes_a_caduceus_checkpoint(caduceus, tmp_path, capsys):
    from mambatune.pipelines.cli import main

    _, folder = caduceus
    out = tmp_path / "run"
    assert main(["run", "genomics/promoter_lora", f"model.pretrained={folder}", "data.window=64",
                 "data.max_train=32", "data.max_eval=24", "data.n_boot=20", "train.batch_size=8",
                 "train.max_steps=2", "train.eval_every=2", "train.progress=false", "train.plots=false",
                 "data.scratch_baseline=false", f"train.output_dir={out}"]) == 0
    assert "Caduceus token ids mapped to ours (its ids A:10, C:11, G:12, T:13, N:14)" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["test"]


def test_zero_shot_scores_of_a_masked_lm_are_masked_marginals(caduceus):
    """A bidirectional checkpoint scores variants by the masked marginal (our ids into the adopted model
    = Caduceus' ids, with its [MASK] 6, into the original)."""
    import torch.nn.functional as F

    from mambatune.domains.genomics.vep import lm_log_likelihood_ratio

    src, folder = caduceus
    tok = DNATokenizer()
    model = load_pretrained(folder).eval()
    adopt_checkpoint_vocabulary(model, folder, tok)
    refs, alts = ["ACGTACGTAC", "TTGCAAGGCT"], ["ACGTTCGTAC", "TTGCAAGGCA"]
    scores = lm_log_likelihood_ratio(model, refs, alts, tok, both_strands=False)
    ids = {b: 10 + i for i, b in enumerate("ACGTN")}
    expected = []
    with torch.no_grad():
        for r, a in zip(refs, alts):
            p = next(i for i, (x, y) in enumerate(zip(r, a)) if x != y)
            x = torch.tensor([[6 if i == p else ids[b] for i, b in enumerate(r)]])
            logp = F.log_softmax(src(x).logits[0, p].float(), -1)
            expected.append(float(logp[ids[a[p]]] - logp[ids[r[p]]]))
    assert scores == pytest.approx(expected, abs=1e-5)
    both = lm_log_likelihood_ratio(model, refs, alts, tok, both_strands=True)
    assert both.shape == (2,) and all(abs(v) < 50 for v in both)
    with pytest.raises(ValueError, match="exactly one"):
        lm_log_likelihood_ratio(model, ["ACGT"], ["TCGA"], tok)


def test_a_bidirectional_model_pretrains_as_a_masked_lm(tmp_path):
    """pretrain_dna with a bidirectional config trains the masked-LM objective (a next-token loss would be
    read off the input), saves it as such, and the loss it reports is a real masked-LM loss."""
    from mambatune.domains.genomics.sequence_data import MaskedEval, MaskedLMCollate
    from mambatune.pipelines.cli import main

    tok = DNATokenizer()
    collate = MaskedLMCollate(tok)
    torch.manual_seed(0)
    batch = collate([{"input_ids": torch.tensor(tok.encode("ACGT" * 50))}])
    chosen = batch["labels"] != -100
    assert 0.08 < chosen.float().mean() < 0.25  # about 15% of the bases
    assert (batch["input_ids"][chosen] == tok.mask_id).float().mean() > 0.6
    assert torch.equal(batch["input_ids"][~chosen], torch.tensor(tok.encode("ACGT" * 50))[~chosen[0]])
    fixed = MaskedEval([{"input_ids": torch.tensor(tok.encode("ACGTTGCA" * 8))}], collate, seed=3)
    assert torch.equal(collate([fixed[0]])["input_ids"], collate([fixed[0]])["input_ids"])

    out = tmp_path / "lm"
    assert main(["run", "genomics/pretrain_dna", "model.config.bidirectional=true", "model.config.d_model=8",
                 "model.config.n_layer=1", "model.config.d_state=4", "data.window=64", "data.max_train=32",
                 "data.max_eval=16", "train.batch_size=8", "train.max_steps=3", "train.eval_every=3",
                 "train.progress=false", "train.plots=false", f"train.output_dir={out}"]) == 0
    meta = json.loads((out / "model" / "config.json").read_text())
    assert "masked LM" in json.dumps(meta)
    model = load_pretrained(out / "model")
    assert model.config.bidirectional and model.head.masked
    results = json.loads((out / "results.json").read_text())
    (name, scores), = [(k, v) for k, v in results["test"].items() if k.startswith("mamba")]
    assert "masked LM" in name
    assert 0.5 < scores["nats_per_base"] < 5  # ~log(10) untrained; scoring unmasked tokens would give ~0


def test_masked_lm_loss_cannot_be_won_by_copying_the_input():
    """A model that copies its input token is perfect at reading its own position: the masked-LM loss
    (inputs masked, scored where masked) gives it no credit, while an unmasked score would be ~0."""
    from types import SimpleNamespace

    from mambatune.core.heads import LMHead
    from mambatune.domains.genomics.sequence_data import DNAWindowDataset, MaskedEval, MaskedLMCollate
    from mambatune.pipelines.genomics.models import lm_loss

    tok = DNATokenizer()
    head = LMHead(4, tok.vocab_size, masked=True)

    class Copier(torch.nn.Module):
        config = SimpleNamespace(bidirectional=True)

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask=None, labels=None):
            logits = torch.nn.functional.one_hot(input_ids, tok.vocab_size).float() * 30
            return SimpleNamespace(logits=logits, loss=head.loss(logits, labels, attention_mask))

    data = DNAWindowDataset(["ACGTTGCAAC" * 20] * 4, tokenizer=tok, lm=True)
    collate = MaskedLMCollate(tok)
    masked = lm_loss(Copier(), MaskedEval(data, collate, seed=0), collate=collate)
    assert masked > 3.0  # the copier predicts [MASK] where a base was masked
