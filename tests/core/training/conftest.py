import torch
import pytest

from mambatune.core import MambaConfig, MambaForTask, build_head


def tiny_model(dropout: float = 0.0, seed: int = 0) -> MambaForTask:
    torch.manual_seed(seed)
    config = MambaConfig(d_model=16, n_layer=2, vocab_size=32, d_state=4, backend="chunked")
    return MambaForTask(config, build_head("classification", 16, num_labels=2, dropout=dropout))


def tiny_data(n: int = 64, length: int = 16, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 32, (n, length), generator=g)
    y = (x[:, :4].sum(1) > 64).long()
    return [{"input_ids": x[i], "labels": y[i]} for i in range(n)]


def collate(batch):
    return {"input_ids": torch.stack([e["input_ids"] for e in batch]),
            "labels": torch.stack([e["labels"] for e in batch])}


def accuracy(logits, labels):
    return {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}


@pytest.fixture
def fast_cfg(tmp_path):
    def make(**kw):
        from mambatune.core.training import TrainConfig
        base = dict(output_dir=str(tmp_path / "run"), epochs=1, batch_size=8, progress=False, plots=False,
                    tensorboard=False, log_every=1)
        base.update(kw)
        return TrainConfig(**base)
    return make
