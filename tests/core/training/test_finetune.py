"""The one fine-tune path (core.training.finetune): PEFT applied and summarised, parameters that must train
anyway, the trained model back unwrapped; the training data's fingerprint in the run identity, so a resume
onto changed data is refused with the change named, and random augmentation does not change it."""
import numpy as np
import pytest
import torch

from mambatune.core.peft import LoRAConfig, PeftConfig
from mambatune.core.training.finetune import finetune, fingerprint_dataset, fingerprint_of, skeleton
from mambatune.core.training.identity import RunIdentityError

from .conftest import collate, tiny_data, tiny_model


class RandomFlip(torch.utils.data.Dataset):
    """Examples whose tokens are reversed at random on each read (like genomics' random reverse complement)."""

    def __init__(self, examples):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        e = self.examples[i]
        flip = bool(torch.rand(()) < 0.5) ^ (np.random.rand() < 0.5)
        return {**e, "input_ids": e["input_ids"].flip(0) if flip else e["input_ids"]}


def test_lora_is_applied_summarised_and_the_model_comes_back_unwrapped(fast_cfg, capsys):
    model = tiny_model()
    trained, result, summary = finetune(model, fast_cfg(max_steps=2), tiny_data(32), None, collate,
                                        methods=PeftConfig([LoRAConfig(rank=4)], train_head=False),
                                        train_anyway=["head."])
    assert result.steps == 2 and trained is model  # one process: the model itself, trained in place
    assert "lora" in summary and "trainable" in summary and summary in capsys.readouterr().out
    trainable = {n for n, p in trained.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert any(n.startswith("head.") for n in trainable)  # frozen by train_head=False, trained by train_anyway
    assert not any(n.endswith("in_proj.weight") for n in trainable)  # the base weights stay frozen


def test_the_skeleton_has_the_shapes_and_no_storage():
    model = tiny_model()
    copy = skeleton(model)
    assert all(p.device.type == "meta" for p in copy.parameters())
    copy.load_state_dict(model.state_dict(), assign=True)
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), model.state_dict().values()))


def test_the_fingerprint_follows_the_data_not_the_augmentation_draws():
    data = tiny_data(40)
    torch.manual_seed(1)
    np.random.seed(1)
    first = fingerprint_dataset(RandomFlip(data))
    after = torch.rand(3), np.random.rand()
    torch.manual_seed(2)
    assert fingerprint_dataset(RandomFlip(data)) == first  # other global RNG state, same fingerprint
    torch.manual_seed(1)
    np.random.seed(1)
    fingerprint_dataset(RandomFlip(data))
    assert torch.equal(torch.rand(3), after[0]) and np.random.rand() == after[1]  # the generators are left alone
    changed = [dict(e) for e in data]
    changed[7] = {**changed[7], "labels": 1 - changed[7]["labels"]}
    assert fingerprint_dataset(RandomFlip(changed)) != first  # one label differs
    assert fingerprint_dataset(RandomFlip(data[:-1])) != first
    assert fingerprint_of({"a": np.arange(3), "b": "x"}) == fingerprint_of({"b": "x", "a": np.arange(3)})


def test_resuming_onto_changed_training_data_is_refused_naming_the_change(fast_cfg):
    data = tiny_data(32)
    cfg = fast_cfg(max_steps=2, save_every=1)
    finetune(tiny_model(), cfg, data, None, collate, announce=False)
    changed = [{**e, "labels": 1 - e["labels"]} for e in data]
    with pytest.raises(RunIdentityError, match=r"extra\.data_fingerprint: \w+ -> \w+"):
        finetune(tiny_model(), fast_cfg(max_steps=4, save_every=1), changed, None, collate, announce=False)
    # the same data resumes (the fingerprint does not depend on the process or the RNG state)
    torch.manual_seed(123)
    _, result, _ = finetune(tiny_model(), fast_cfg(max_steps=4, save_every=1), data, None, collate, announce=False)
    assert result.steps == 4
