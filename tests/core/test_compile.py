"""torch.compile: the model compiles with fullgraph=True (no graph break), forward and backward, and gives
eager's outputs and gradients. On a CPU with the aot_eager backend (fast); the Triton kernels' custom ops
run through Triton's interpreter; the GPU tests compile with inductor on CUDA."""
import copy

import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.kernels import causal_conv1d, selective_scan

VOCAB = 32


def tiny_config(arch: str, backend: str, n_layer: int = 2) -> MambaConfig:
    extra = dict(headdim=8, chunk_size=16) if arch == "mamba2" else {}
    return MambaConfig(d_model=16, n_layer=n_layer, vocab_size=VOCAB, d_state=8, arch=arch, backend=backend, **extra)


def padded_and_packed(batch: int = 2, length: int = 24, device: str = "cpu"):
    """Token ids, a mask whose second row is padded at the end and seq_idx packing two documents in the first."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, VOCAB, (batch, length), generator=g).to(device)
    mask = torch.ones(batch, length, dtype=torch.long, device=device)
    mask[1, length * 3 // 4:] = 0
    seq_idx = torch.zeros(batch, length, dtype=torch.long, device=device)
    seq_idx[0, length // 3:] = 1
    return ids, mask, seq_idx


def train_step(model, ids, mask, seq_idx, labels):
    """Loss, logits and every parameter's gradient (by name) of one forward and backward."""
    model.zero_grad(set_to_none=True)
    out = model(ids, attention_mask=mask, seq_idx=seq_idx, labels=labels)
    out.loss.backward()
    grads = {n.replace("_orig_mod.", ""): p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), out.logits.detach(), grads


def assert_same_step(model, backend: str, inputs, labels, tol: float) -> None:
    """The compiled copy of ``model`` (fullgraph) gives the eager model's loss, logits and gradients."""
    compiled = torch.compile(copy.deepcopy(model), fullgraph=True, backend=backend)
    loss, logits, grads = train_step(model, *inputs, labels)
    loss_c, logits_c, grads_c = train_step(compiled, *inputs, labels)
    assert_close(loss_c, loss, tol, "loss")
    assert_close(logits_c, logits, tol, "logits")
    assert grads_c.keys() == grads.keys()
    for name, g in grads.items():
        assert_close(grads_c[name], g, tol, name)


@pytest.mark.parametrize("arch,backend", [("mamba1", "chunked"), ("mamba2", "chunked"), ("mamba2", "triton")])
def test_compiled_step_matches_eager(arch, backend):
    """LM loss over a padded and a packed row; mamba2 + triton runs the SSD and conv custom ops (interpreted)."""
    torch.manual_seed(0)
    model = MambaForTask(tiny_config(arch, backend))
    ids, mask, seq_idx = padded_and_packed()
    assert_same_step(model, "aot_eager", (ids, mask, seq_idx), ids, 1e-5)


def test_compiled_classifier_matches_eager():
    """A pooled sequence head (its label and empty-row checks are eager-only) on padded inputs."""
    torch.manual_seed(0)
    config = tiny_config("mamba1", "chunked")
    model = MambaForTask(config, build_head("classification", 16, num_labels=3, pooling="mean"))
    ids, mask, _ = padded_and_packed()
    assert_same_step(model, "aot_eager", (ids, mask, None), torch.tensor([0, 2]), 1e-5)


@pytest.mark.slow
def test_inductor_on_cpu_matches_eager():
    """The default backend, inductor, on a CPU: one layer (its C++ compile takes 20-40 s on two cores)."""
    torch.manual_seed(0)
    model = MambaForTask(tiny_config("mamba1", "chunked", n_layer=1))
    ids, mask, seq_idx = padded_and_packed(length=16)
    assert_same_step(model, "inductor", (ids, mask, seq_idx), ids, 1e-5)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """(batch, dim, L) with the layout the mixer passes: a transposed (batch, L, dim) tensor."""
    return t.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(t.requires_grad)


@pytest.mark.parametrize("kernel", ["long", "short"])
def test_scan_custom_op_matches_eager(kernel, monkeypatch):
    """The Triton scan's custom ops (interpreted) on channels-last views, with mask and seq_idx: outputs, final
    state and every gradient as eager's, and no graph break."""
    from mambatune.kernels.selective_scan import triton_long

    if kernel == "short":
        monkeypatch.setattr(triton_long, "supports", lambda p: False)
    torch.manual_seed(0)
    batch, dim, n, length = 2, 4, 4, 12
    u, delta, z = (channels_last(torch.randn(batch, dim, length, requires_grad=True)) for _ in range(3))
    A = (-torch.rand(dim, n) - 0.5).requires_grad_()
    B, C = (torch.randn(batch, 1, n, length, requires_grad=True) for _ in range(2))
    D, bias = torch.randn(dim, requires_grad=True), torch.randn(dim, requires_grad=True)
    mask = torch.ones(batch, length)
    mask[1, 9:] = 0
    seq_idx = torch.zeros(batch, length, dtype=torch.long)
    seq_idx[0, 5:] = 1
    leaves = (u, delta, A, B, C, D, z, bias)

    def run(u, delta, A, B, C, D, z, bias):
        y, last = selective_scan(u, delta, A, B, C, D, z, bias, delta_softplus=True, return_final_state=True,
                                 seq_idx=seq_idx, mask=mask, backend="triton")
        return y, last

    def outputs_and_grads(fn):
        y, last = fn(*leaves)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, length)).sum() + last.square().sum(), leaves)
        return (y, last, *grads)

    eager = outputs_and_grads(run)
    compiled = outputs_and_grads(torch.compile(run, fullgraph=True, backend="aot_eager"))
    assert compiled[0].stride() == eager[0].stride()
    for name, a, b in zip(("y", "last", "u", "delta", "A", "B", "C", "D", "z", "bias"), compiled, eager):
        assert_close(a, b, 1e-5, name)


def test_conv_custom_op_matches_eager():
    torch.manual_seed(0)
    x = channels_last(torch.randn(2, 4, 10, requires_grad=True))
    w, b = torch.randn(4, 1, 4, requires_grad=True), torch.randn(4, requires_grad=True)
    mask = torch.ones(2, 10)
    mask[0, 7:] = 0
    seq_idx = torch.zeros(2, 10, dtype=torch.long)
    seq_idx[1, 4:] = 1

    def run(x, w, b):
        return causal_conv1d(x, w, b, "silu", seq_idx=seq_idx, mask=mask, backend="triton")

    def outputs_and_grads(fn):
        out = fn(x, w, b)
        return (out, *torch.autograd.grad((out * torch.linspace(-1, 1, 10)).sum(), (x, w, b)))

    eager = outputs_and_grads(run)
    compiled = outputs_and_grads(torch.compile(run, fullgraph=True, backend="aot_eager"))
    for name, a, e in zip(("out", "x", "weight", "bias"), compiled, eager):
        assert_close(a, e, 1e-5, name)


def test_eager_never_calls_the_custom_ops(monkeypatch):
    """The ops are for compiled graphs only: eager keeps the backends' own autograd Functions."""
    from mambatune.kernels.selective_scan import ops

    def refuse(*args, **kwargs):
        raise AssertionError("eager called the custom op")

    monkeypatch.setattr(ops, "selective_scan_op", refuse)
    model = MambaForTask(tiny_config("mamba1", "chunked"))
    ids, mask, seq_idx = padded_and_packed()
    model(ids, attention_mask=mask, seq_idx=seq_idx, labels=ids).loss.backward()
    with pytest.raises(ValueError, match="out of range for vocab_size"):
        model(ids + VOCAB)


def test_train_compile_knob(tmp_path, monkeypatch):
    """train.compile compiles the model in place (parameter names unchanged), trains, and is recorded."""
    import json

    from mambatune.core.training import TrainConfig, Trainer

    real_compile = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: real_compile(self, backend="aot_eager", **kw))
    with pytest.raises(ValueError, match="compile must be"):
        TrainConfig(compile="yes")
    torch.manual_seed(0)
    model = MambaForTask(tiny_config("mamba1", "chunked"), build_head("classification", 16, num_labels=2))
    names = [n for n, _ in model.named_parameters()]
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(0, VOCAB, (12,), generator=g), "labels": torch.tensor(i % 2)}
            for i in range(16)]
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), max_steps=2, batch_size=8, progress=False, plots=False,
                      log_every=1, compile=True)
    Trainer(model, cfg, data, None, lambda b: {k: torch.stack([e[k] for e in b]) for k in b[0]}).train()
    assert model._compiled_call_impl is not None
    assert [n for n, _ in model.named_parameters()] == names
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["compile"] is True


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_inductor_on_cuda_matches_eager(arch):
    """The Triton kernels under inductor on a GPU: the compiled training step is eager's, fullgraph."""
    torch.manual_seed(0)
    config = MambaConfig(d_model=64, n_layer=2, vocab_size=VOCAB, d_state=16, arch=arch, backend="triton",
                         **(dict(headdim=16, chunk_size=64) if arch == "mamba2" else {}))
    model = MambaForTask(config).cuda()
    ids, mask, seq_idx = padded_and_packed(batch=3, length=203, device="cuda")
    assert_same_step(model, "inductor", (ids, mask, seq_idx), ids, 1e-4)


@pytest.mark.gpu
def test_inductor_on_cuda_bf16_close_to_eager():
    torch.manual_seed(0)
    model = MambaForTask(MambaConfig(d_model=64, n_layer=2, vocab_size=VOCAB, d_state=16, backend="triton")).cuda()
    ids, mask, seq_idx = padded_and_packed(batch=3, length=203, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert_same_step(model, "inductor", (ids, mask, seq_idx), ids, 3e-2)
