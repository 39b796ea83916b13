"""The model on CUDA with the Triton backend (the default there): parity with transformers and the CPU backends."""
import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig, MambaForTask, MambaModel, pool
from mambatune.kernels.selective_scan import resolve_backend

pytestmark = pytest.mark.gpu
transformers = pytest.importorskip("transformers")


def test_auto_is_triton_on_cuda():
    assert resolve_backend("auto", torch.device("cuda")) == "triton"


def test_hf_parity_with_triton(tmp_path):
    from mambatune.core.checkpoints import load_pretrained

    torch.manual_seed(0)
    hf = transformers.MambaForCausalLM(transformers.MambaConfig(
        vocab_size=128, hidden_size=64, state_size=16, num_hidden_layers=3)).eval()
    hf.save_pretrained(tmp_path)
    ids = torch.randint(0, 128, (2, 301))
    with torch.no_grad():
        ref = hf(ids).logits
        ours = load_pretrained(tmp_path, backend="triton").cuda().eval()
        assert_close(ours(ids.cuda()).logits.cpu(), ref, 1e-5)


def test_triton_model_matches_chunked_with_padding_and_packing():
    torch.manual_seed(1)
    cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=32, d_state=16)
    a = MambaModel(MambaConfig(**{**cfg.to_dict(), "backend": "triton"})).cuda().eval()
    b = MambaModel(MambaConfig(**{**cfg.to_dict(), "backend": "chunked"})).cuda().eval()
    b.load_state_dict(a.state_dict())
    ids = torch.randint(1, 32, (3, 257), device="cuda")
    mask = torch.ones(3, 257, device="cuda")
    mask[1, 200:] = 0
    seq = torch.zeros(3, 257, dtype=torch.long, device="cuda")
    seq[2, 100:] = 1
    with torch.no_grad():
        for kw in (dict(attention_mask=mask), dict(seq_idx=seq)):
            assert_close(a(ids, **kw), b(ids, **kw), 1e-4)
        alone = a(ids[1:2, :200])
        assert_close(pool(a(ids, attention_mask=mask)[1:2], mask[1:2], "mean"), pool(alone, None, "mean"), 1e-4)


def test_bf16_training_step_gradients_match_chunked():
    torch.manual_seed(2)
    cfg = MambaConfig(d_model=64, n_layer=2, vocab_size=32, d_state=16)
    grads = {}
    for backend in ("triton", "chunked"):
        torch.manual_seed(2)
        m = MambaForTask(MambaConfig(**{**cfg.to_dict(), "backend": backend})).cuda()
        ids = torch.randint(0, 32, (2, 512), device="cuda", generator=None)
        ids = torch.arange(2 * 512, device="cuda").reshape(2, 512) % 31
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = m(ids, labels=ids).loss
        loss.backward()
        grads[backend] = {n: p.grad.float().clone() for n, p in m.named_parameters() if p.grad is not None}
        assert torch.isfinite(loss)
    for n, g in grads["chunked"].items():
        assert_close(grads["triton"][n], g, 5e-2, n)


def test_generation_on_cuda_matches_forward():
    torch.manual_seed(3)
    lm = MambaForTask(MambaConfig(d_model=64, n_layer=2, vocab_size=32)).cuda().eval()
    prompt = torch.randint(0, 32, (2, 16), device="cuda")
    out = lm.generate(prompt, max_new_tokens=8)
    with torch.no_grad():
        full = lm(out[:, :-1]).logits[:, 15:, :32].argmax(-1)
    assert torch.equal(full, out[:, 16:])
