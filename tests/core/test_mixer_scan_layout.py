"""The Mamba-1 mixer's two ways of handing the scan its inputs (``mambatune.core.mixer.SCAN_LAYOUT``) compute
the same function: outputs and every parameter's gradient, with padding and packed documents. On a GPU the
Triton scan then runs triton_long on contiguous rows instead of a kernel picked for the views."""
import pytest
import torch

from helpers import assert_close
from mambatune.core import MambaConfig, MambaModel, mixer

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def run(layout, monkeypatch, backend):
    monkeypatch.setattr(mixer, "SCAN_LAYOUT", layout)
    torch.manual_seed(0)
    model = MambaModel(MambaConfig(d_model=32, n_layer=2, vocab_size=16, d_state=8, backend=backend)).to(DEVICE)
    ids = torch.randint(1, 16, (2, 37), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    mask = torch.ones(2, 37, device=DEVICE)
    mask[1, 30:] = 0
    seq = torch.zeros(2, 37, dtype=torch.long, device=DEVICE)
    seq[0, 20:] = 1
    out = model(ids, attention_mask=mask) + model(ids, seq_idx=seq)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend", ["chunked"] + (["triton"] if DEVICE == "cuda" else []))
def test_time_contiguous_layout_matches_views(backend, monkeypatch):
    out_v, grads_v = run("views", monkeypatch, backend)
    out_c, grads_c = run("time_contiguous", monkeypatch, backend)
    assert_close(out_c, out_v, 1e-5)
    assert grads_c.keys() == grads_v.keys() and grads_v
    for name in grads_v:
        assert_close(grads_c[name], grads_v[name], 1e-4)


def test_unknown_layout_raises(monkeypatch):
    monkeypatch.setattr(mixer, "SCAN_LAYOUT", "channels_first")
    model = MambaModel(MambaConfig(d_model=16, n_layer=1, vocab_size=8, d_state=4, backend="chunked"))
    with pytest.raises(ValueError, match="SCAN_LAYOUT"):
        model(torch.zeros(1, 5, dtype=torch.long))
