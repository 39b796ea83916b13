"""Tiny models and batches for the PEFT tests."""
import torch

from mambatune.core import MambaConfig, MambaForTask, TokenClassificationHead



def tiny_model(backend: str = "chunked", head: str = "token", seed: int = 0, **overrides) -> MambaForTask:
    """2 layers, d_model 16, d_state 4: small enough for the reference scan."""
    torch.manual_seed(seed)
    cfg = MambaConfig(**{"d_model": 16, "n_layer": 2, "vocab_size": 32, "d_state": 4, "backend": backend, **overrides})
    return MambaForTask(cfg, TokenClassificationHead(16, 3) if head == "token" else None)


def tiny_batch(seed: int = 1, batch: int = 2, length: int = 16):
    """ids (batch, L), an attention mask with the last 4 steps of the last row padded, token labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 32, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, -4:] = 0
    labels = torch.randint(0, 3, (batch, length), generator=g)
    return ids, mask, labels

