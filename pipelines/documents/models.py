"""The documents pipeline's models: which base model a recipe names, and the classifier built on it.

``model.pretrained``: ``default`` (``$MAMBATUNE_TEXT_MODEL``, else the shipped text-mamba-140k, else what
``documents/pretrain_text`` leaves in runs/pretrain_text/model), a shipped model's name, a folder, or null
(a new model of ``model.config``). A pretrained model keeps its shape: the recipe's shape keys it does not
use are noted (for the report and config.yaml's header), and a command-line shape override that
contradicts it is a RecipeError (``recipe.pretrained_overrides``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core import peft
from mambatune.core.checkpoints import load_config, load_pretrained, resolve_path, save_pretrained
from mambatune.domains import documents as text_domain
from mambatune.domains.documents.tokenizer_file import check_tokenizer, save_tokenizer

from .. import domain_run
from ..recipe import pretrained_overrides

DEFAULT_TEXT_MODEL = "runs/pretrain_text/model"  # where `mambatune run documents/pretrain_text` leaves its model
# pretrained on a GPU by this project's recipe and shipped in the package (recipe and log beside it)
SHIPPED_TEXT_MODEL = Path(text_domain.__file__).parent / "pretrained" / "text-mamba-140k"


def resolve_pretrained(path: str | None) -> str | None:
    """``default``: $MAMBATUNE_TEXT_MODEL, else the shipped text model, else runs/pretrain_text/model."""
    return domain_run.resolve_pretrained(path, "MAMBATUNE_TEXT_MODEL", DEFAULT_TEXT_MODEL, "documents/pretrain_text", "text model",
                                      shipped=SHIPPED_TEXT_MODEL)


def model_overrides(recipe, pretrained: str | None) -> tuple[dict | None, list[str]]:
    """(the ``model.config`` keys applied to the pretrained model, notes on the recipe's keys it does not
    use); (None, []) for a new model. A command-line override that contradicts the pretrained model's shape
    is a RecipeError (``recipe.pretrained_overrides``); it is checked before any data is read."""
    if not pretrained:
        return None, []
    keep, notes = pretrained_overrides(recipe, load_config(resolve_path(pretrained))[0])
    return keep or None, notes


def new_config(recipe, tokenizer) -> MambaConfig:
    return MambaConfig.from_dict({**recipe.model.config, "vocab_size": tokenizer.vocab_size,
                                  "pad_token_id": tokenizer.pad_id})


def build_classifier(recipe, tokenizer, num_labels: int, multi_label: bool, weights, pretrained):
    """A classifier with a fresh seeded head: the pretrained model (its shape, the recipe's behaviour keys; see
    :func:`model_overrides`) or a new one of ``model.config`` sized to the tokenizer."""
    torch.manual_seed(recipe.model.seed)
    spec = dict(recipe.model.head)
    spec["kind"] = "multilabel" if multi_label else "classification"
    spec.setdefault("num_labels", num_labels)
    if weights is not None:
        spec["pos_weight" if multi_label else "class_weights"] = [float(w) for w in weights]
    if pretrained:
        check_tokenizer(tokenizer, pretrained)
        model = load_pretrained(pretrained, head=spec, config_overrides=model_overrides(recipe, pretrained)[0])
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"the pretrained model's vocabulary ({model.config.vocab_size}) is smaller than the "
                             f"tokenizer's ({tokenizer.vocab_size}); use a model trained with this tokenizer")
        return model
    config = new_config(recipe, tokenizer)
    kind = spec.pop("kind")
    return MambaForTask(config, build_head(kind, config.d_model, **spec))


def method_name(recipe, pretrained) -> str:
    methods = "+".join(m.method for m in recipe.peft.methods) or "full"
    return f"mamba {'pretrained' if pretrained else 'from scratch'} ({methods})"


def save_trained(model, run_dir: Path, recipe, tok) -> None:
    """``model/`` (or ``adapter/``) with the tokenizer.json its ids come from."""
    folder = run_dir / ("adapter" if recipe.peft.methods else "model")
    if recipe.peft.methods:
        peft.save_adapter(model, folder)
    else:
        save_pretrained(model, folder, meta={"recipe": recipe.name})
    save_tokenizer(tok, folder)
