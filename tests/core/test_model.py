"""Model behaviour: padding, packing, recurrence, bidirectional and reverse-complement modes, bad input."""
import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig, MambaForTask, MambaModel, SequenceClassificationHead, pool

BACKENDS = ["reference", "chunked"]


def tiny(**kw):
    base = dict(d_model=16, n_layer=2, vocab_size=12, d_state=4, pad_vocab_size_multiple=4)
    base.update(kw)
    return MambaConfig(**base)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_pooled_output(backend, bidirectional):
    model = MambaModel(tiny(backend=backend, bidirectional=bidirectional)).eval()
    ids = torch.randint(1, 12, (1, 13))
    padded = torch.cat([ids, torch.zeros(1, 6, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 13), torch.zeros(1, 6)], 1).long()
    with torch.no_grad():
        alone = model(ids)
        h = model(padded, attention_mask=mask)
    for how in ("mean", "last", "max", "cls"):
        assert_close(pool(h, mask, how), pool(alone, None, how), 1e-5, how)


@pytest.mark.parametrize("backend", BACKENDS)
def test_left_padding_matches_unpadded(backend):
    model = MambaModel(tiny(backend=backend)).eval()
    ids = torch.randint(1, 12, (1, 9))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 4), torch.ones(1, 9)], 1)
    with torch.no_grad():
        assert_close(model(padded, attention_mask=mask)[:, 4:], model(ids), 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_equals_separate(backend, bidirectional):
    model = MambaModel(tiny(backend=backend, bidirectional=bidirectional)).eval()
    docs = [torch.randint(1, 12, (1, n)) for n in (7, 1, 12)]
    packed = torch.cat(docs, 1)
    seq_idx = torch.cat([torch.full((1, d.shape[1]), i) for i, d in enumerate(docs)], 1)
    with torch.no_grad():
        out = model(packed, seq_idx=seq_idx)
        alone = torch.cat([model(d) for d in docs], 1)
    assert_close(out, alone, 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_by_step_equals_parallel(backend):
    model = MambaForTask(tiny(backend=backend)).eval()
    ids = torch.randint(0, 12, (2, 11))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.backbone.new_cache(2)
        steps = torch.cat([model(ids[:, t : t + 1], cache=cache).logits for t in range(11)], 1)
        cache = model.backbone.new_cache(2)
        prefill = model(ids[:, :6], cache=cache).logits
        rest = torch.cat([model(ids[:, t : t + 1], cache=cache).logits for t in range(6, 11)], 1)
    assert_close(steps, full, 1e-5, "steps")
    assert_close(torch.cat([prefill, rest], 1), full, 1e-5, "prefill then steps")


def test_generation_greedy_matches_argmax_and_sampling_is_seeded():
    model = MambaForTask(tiny()).eval()
    prompt = torch.randint(0, 12, (2, 5))
    out = model.generate(prompt, max_new_tokens=6)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt)
    with torch.no_grad():
        for t in range(5, 11):  # each greedy token is the argmax of the full forward
            logits = model(out[:, :t]).logits[:, -1, :12]
            assert torch.equal(logits.argmax(-1), out[:, t])
    a = model.generate(prompt, 5, temperature=1.0, top_k=4, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 5, temperature=1.0, top_k=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


COMPLEMENT = [0, 1, 5, 4, 3, 2, 6, 7, 8, 9, 10, 11]  # ids 2..5 = A, C, G, T: A<->T, C<->G


@pytest.mark.parametrize("backend", BACKENDS)
def test_rcps_features_are_rc_equivariant(backend):
    model = MambaModel(tiny(backend=backend, rc_equivariant="rcps", complement_map=COMPLEMENT)).eval()
    ids = torch.randint(2, 6, (2, 15))
    rc = model.reverse_complement(ids)
    with torch.no_grad():
        h, h_rc = model(ids), model(rc)
    d = 16
    assert h.shape[-1] == 2 * d
    # the reverse complement swaps the two strands' features and reverses positions
    assert_close(h_rc[..., :d], h[..., d:].flip(1), 1e-5)
    assert_close(h_rc[..., d:], h[..., :d].flip(1), 1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_posthoc_rc_classifier_is_invariant(bidirectional):
    cfg = tiny(rc_equivariant="posthoc", complement_map=COMPLEMENT, bidirectional=bidirectional)
    model = MambaForTask(cfg, head=SequenceClassificationHead(16, 3)).eval()
    ids = torch.randint(2, 6, (3, 20))
    with torch.no_grad():
        a = model(ids).logits
        b = model(model.backbone.reverse_complement(ids)).logits
    assert_close(a, b, 1e-5)


def test_bidirectional_sees_the_future_and_causal_does_not():
    ids = torch.randint(1, 12, (1, 10))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] % 11) + 1
    for bi, strategy in [(False, "add"), (True, "add"), (True, "mul"), (True, "gate")]:
        model = MambaModel(tiny(bidirectional=bi, bidirectional_strategy=strategy)).eval()
        with torch.no_grad():
            moved = (model(ids)[0, 0] - model(changed)[0, 0]).abs().max().item()
        assert (moved > 1e-6) == bi, (bi, strategy, moved)


def test_tied_bidirectional_shares_projections():
    tied = MambaModel(tiny(bidirectional=True, tie_bidirectional=True))
    untied = MambaModel(tiny(bidirectional=True, tie_bidirectional=False))
    assert not hasattr(tied.layers[0].mixer.rev, "in_proj")
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == 2 * (16 * 64 + 32 * 16)


def test_bad_inputs_raise_clear_errors():
    model = MambaForTask(tiny())
    with pytest.raises(TypeError, match="integer tensor"):
        model(torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"\(batch, L\)"):
        model(torch.randint(0, 12, (5,)))
    with pytest.raises(ValueError, match="out of range for vocab_size 12"):
        model(torch.tensor([[1, 2, 12]]))
    with pytest.raises(ValueError, match="out of range"):
        model(torch.tensor([[1, -1]]))
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="length 0"):
        model(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(inputs_embeds=torch.full((1, 3, 16), float("nan")))
    with pytest.raises(ValueError, match="attention mask must be"):
        model(torch.zeros(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="no real token"):
        MambaForTask(tiny(), head=SequenceClassificationHead(16, 2))(torch.zeros(1, 4, dtype=torch.long),
                                                                     attention_mask=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="bidirectional model cannot run step by step"):
        MambaModel(tiny(bidirectional=True)).new_cache(1)


@pytest.mark.parametrize("frozen", [False, True])
def test_host_offloaded_checkpointing_gives_the_same_gradients(frozen):
    """Checkpointing with block inputs kept in host memory: same loss and gradients as no checkpointing,
    also when most parameters are frozen (as under PEFT)."""
    model = MambaForTask(tiny(n_layer=3), head=SequenceClassificationHead(16, 2)).train()
    if frozen:
        for n, p in model.named_parameters():
            p.requires_grad_("head" in n or n.endswith("mixer.D"))
    ids = torch.randint(1, 12, (2, 25))
    mask = torch.ones(2, 25)
    mask[1, 20:] = 0
    labels = torch.tensor([0, 1])
    results = {}
    for mode in ("plain", "checkpoint", "offload"):
        model.zero_grad()
        model.backbone.gradient_checkpointing = mode != "plain"
        model.backbone.offload_checkpoints = mode == "offload"
        loss = model(ids, mask, labels=labels).loss
        loss.backward()
        results[mode] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for mode in ("checkpoint", "offload"):
        assert_close(results[mode][0], results["plain"][0], 0)
        assert results[mode][1].keys() == results["plain"][1].keys()
        for n, g in results["plain"][1].items():
            assert_close(results[mode][1][n], g, 1e-6, n)


def test_attention_pooling_starts_as_mean_learns_weights_and_ignores_padding():
    head = SequenceClassificationHead(16, 3, pooling="attention")
    hidden = torch.randn(2, 7, 16)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    assert_close(head.pooled(hidden, mask)[1], hidden[1, :4].mean(0), 1e-6)  # zero scorer: the mean
    with torch.no_grad():
        head.attention.weight.copy_(torch.randn(1, 16))
    pooled = head.pooled(hidden, mask)
    w = torch.softmax(hidden[1, :4] @ head.attention.weight[0] + head.attention.bias, 0)
    assert_close(pooled[1], (w[:, None] * hidden[1, :4]).sum(0), 1e-5)
    padded = hidden.clone()
    padded[1, 4:] = 1e4  # padded steps never count
    assert_close(head.pooled(padded, mask), pooled, 1e-6)
    loss = head.loss(head(hidden, mask), torch.tensor([0, 2]))
    loss.backward()
    assert head.attention.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs per-step scores"):
        pool(hidden, mask, "attention")
    with pytest.raises(ValueError, match="unknown pooling"):
        SequenceClassificationHead(16, 3, pooling="sum")
    model = MambaForTask(tiny(), SequenceClassificationHead(16, 3, pooling="attention"))
    assert "head.attention.weight" in model.state_dict()
