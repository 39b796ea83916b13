"""The genomics models: the base model (``model.pretrained`` resolved, its shape and the recipe's
overrides), the classifiers, pair classifier and language model built on it, how a trained one is saved
and recorded, and the scoring helpers every task and verb shares (softmax, the pair classifier's
probabilities, an LM's loss, the embedding classifier of a ``vep_method: embedding`` run)."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core import peft
from mambatune.core.atomic import atomic_write_json
from mambatune.core.checkpoints import load_config, load_pretrained, save_pretrained
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.sequence_data import collate_windows
from mambatune.domains.genomics.vep import (
    VariantPairClassifier, VariantPairDataset, collate_pairs, fit_embedding_classifier, pair_features,
)
from mambatune.domains.genomics.vocab import adopt_checkpoint_vocabulary, checkpoint_tokenizer

from .. import domain_run
from ..recipe import pretrained_overrides, save_resolved
from .data import variant_splits

DEFAULT_DNA_MODEL = "runs/pretrain_dna/model"  # where `mambatune run genomics/pretrain_dna` leaves its model
# pretrained on a GPU by this project's recipe and shipped in the package (recipe and log beside it)
SHIPPED_DNA_MODEL = Path(sys.modules["mambatune.domains.genomics"].__file__).parent / "pretrained" / "dna-mamba-120k"


# -- the base model ------------------------------------------------------------------------------

def resolve_pretrained(path: str | None) -> str | None:
    """``default``: $MAMBATUNE_DNA_MODEL, else the shipped DNA model, else runs/pretrain_dna/model."""
    return domain_run.resolve_pretrained(path, "MAMBATUNE_DNA_MODEL", DEFAULT_DNA_MODEL, "genomics/pretrain_dna", "DNA model",
                                      shipped=SHIPPED_DNA_MODEL)


def new_config(recipe, tokenizer: DNATokenizer) -> MambaConfig:
    cfg = dict(recipe.model.config)
    cfg.update(vocab_size=tokenizer.vocab_size, pad_token_id=0)
    if cfg.get("rc_equivariant", "none") != "none":
        cfg.setdefault("complement_map", tokenizer._complement_ids.tolist())
    return MambaConfig.from_dict(cfg)


def pretrained_settings(recipe, pretrained: str | None) -> tuple[dict | None, list[str]]:
    """(the ``model.config`` keys applied to the pretrained model, notes on the recipe's shape keys it does not
    use): see ``recipe.pretrained_overrides`` (a command-line shape key that contradicts the pretrained model
    is a RecipeError). (None, []) for a new model."""
    if not pretrained:
        return None, []
    overrides, notes = pretrained_overrides(recipe, load_config(pretrained)[0])
    return overrides or None, notes


def base_config(recipe, tokenizer: DNATokenizer, pretrained: str | None) -> MambaConfig:
    """The architecture: the pretrained model's with the recipe's behaviour keys (so a scratch baseline is the
    same model), or ``model.config`` sized to the tokenizer."""
    if not pretrained:
        return new_config(recipe, tokenizer)
    config = load_config(pretrained)[0]
    if config.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"the pretrained model's vocabulary ({config.vocab_size}) is smaller than the DNA "
                         f"tokenizer's ({tokenizer.vocab_size})")
    overrides, _ = pretrained_overrides(recipe, config)
    return MambaConfig.from_dict({**config.to_dict(), **overrides})


def record_model(recipe, run_dir: Path, model, pretrained: str | None) -> list[str]:
    """Rewrites ``config.yaml`` with the model as built (a pretrained model's shape, the tokenizer's
    vocabulary), the recipe's unused shape keys noted (main process only); returns those notes."""
    notes = pretrained_settings(recipe, pretrained)[1]
    if domain_run.is_main_process():
        save_resolved(recipe, run_dir, built=model.config, notes=notes)
    return notes



def dna_model(pretrained: str, k: int = 1, **kwargs) -> MambaForTask:
    """``load_pretrained`` for DNA: the checkpoint's saved tokenizer (``tokenizer.json``) must be DNA tokens
    of ``k`` (else a clear error, ``checkpoint_tokenizer``); a checkpoint trained with another tokenizer's ids
    (Caduceus) gets its token rows permuted to :class:`DNATokenizer`'s (``domains.genomics.vocab``), and the
    run says so."""
    tokenizer = checkpoint_tokenizer(pretrained, k)
    model = load_pretrained(pretrained, **kwargs)
    mapping = adopt_checkpoint_vocabulary(model, pretrained, tokenizer)
    if mapping is not None and domain_run.is_main_process():
        bases = ", ".join(f"{t}:{mapping[t]}" for t in "ACGTN")
        print(f"{pretrained}: Caduceus token ids mapped to ours (its ids {bases})")
    return model


def classifier(recipe, config: MambaConfig, num_labels: int, pretrained: str | None) -> MambaForTask:
    torch.manual_seed(recipe.model.seed)
    spec = dict(recipe.model.head)
    spec.setdefault("num_labels", num_labels)
    if pretrained:
        return dna_model(pretrained, head=spec, config_overrides=pretrained_settings(recipe, pretrained)[0])
    kind = spec.pop("kind")
    return MambaForTask(config, build_head(kind, config.d_model * (2 if config.rc_equivariant == "rcps" else 1), **spec))


def pair_classifier(recipe, config: MambaConfig, pretrained: str | None) -> VariantPairClassifier:
    torch.manual_seed(recipe.model.seed)
    if pretrained:
        backbone = dna_model(pretrained, config_overrides=pretrained_settings(recipe, pretrained)[0]).backbone
    else:
        backbone = MambaForTask(config).backbone
    return VariantPairClassifier(backbone, 2, recipe.data.vep_radius, float(recipe.model.head.get("dropout", 0.0)))


def language_model(recipe, tokenizer: DNATokenizer, pretrained: str | None) -> MambaForTask:
    if pretrained:
        overrides = pretrained_settings(recipe, pretrained)[0]
        model = dna_model(pretrained, config_overrides=overrides)
        if getattr(model.head, "kind", None) != "lm":
            model = dna_model(pretrained, head={"kind": "lm"}, config_overrides=overrides)
        return model
    torch.manual_seed(recipe.model.seed)
    return MambaForTask(new_config(recipe, tokenizer))


def main_name(recipe, pretrained: str | None) -> str:
    methods = "+".join(m.method for m in recipe.peft.methods) or "full"
    return f"mamba {'pretrained' if pretrained else 'from scratch'} ({methods})"


def scratch_train_config(recipe, run_dir: Path, name: str):
    return dataclasses.replace(recipe.train, output_dir=str(run_dir / name))


def save_trained(model, run_dir: Path, recipe) -> None:
    """The trained model (``model/``) or adapter (``adapter/``), with the tokenizer it reads beside it."""
    if recipe.peft.methods:
        folder = run_dir / "adapter"
        peft.save_adapter(model, folder)
    elif isinstance(model, MambaForTask):
        folder = run_dir / "model"
        save_pretrained(model, folder, meta={"recipe": recipe.name})
    else:
        from safetensors.torch import save_file
        folder = run_dir / "model"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    DNATokenizer(recipe.data.k).save(folder)


def training_summary(result) -> dict | None:
    if result is None:
        return None
    return {"steps": result.steps, "best_step": result.best_step, "stopped_early": result.stopped_early,
            "seconds": result.seconds, "last_eval": result.last_eval}


# -- scoring -------------------------------------------------------------------------------------

def softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits, -1).numpy()


def binary_eval_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score
    y = labels.numpy()
    p = torch.softmax(logits, -1)[:, 1].numpy()
    return {"auroc": float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan"),
            "accuracy": float(((p >= 0.5) == y).mean())}


def multiclass_eval_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import f1_score
    pred, y = logits.argmax(-1).numpy(), labels.numpy()
    return {"accuracy": float((pred == y).mean()), "macro_f1": float(f1_score(y, pred, average="macro"))}


def pair_probs(model, data: VariantPairDataset, rc_average: bool) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(data), 32):
            batch = collate_pairs([data[i] for i in range(start, min(start + 32, len(data)))])
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            logits = model(ids, mask).logits.float()
            if rc_average:
                rc = data.tokenizer.reverse_complement_ids(ids.reshape(-1, ids.shape[-1])).reshape(ids.shape)
                logits = (logits + model(rc, mask).logits.float()) / 2
            out.append(torch.softmax(logits, -1).cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def lm_loss(model: MambaForTask, data, batch_size: int = 32, collate=collate_windows) -> float:
    """Mean next-token cross-entropy (nats per base) over the windows; with a masked LM's data and collate
    (:class:`MaskedEval`, :class:`MaskedLMCollate`), the mean over the masked bases."""
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss
        if model.config.bidirectional:
            count = int((batch["labels"] != -100).sum())
        else:
            count = int(batch["attention_mask"][:, 1:].sum())
        total += float(loss) * count
        n += count
    return total / n



# -- the embedding classifier of a vep_method: embedding run ----------------------------------------

class EmbeddingClassifier:
    """The standardised logistic regression of a ``vep_method: embedding`` run, from its saved numbers."""

    def __init__(self, mean, scale, coef, intercept):
        self.mean, self.scale = np.asarray(mean), np.asarray(scale)
        self.coef, self.intercept = np.asarray(coef), np.asarray(intercept)

    @classmethod
    def from_sklearn(cls, pipeline) -> "EmbeddingClassifier":
        scaler, lr = pipeline[0], pipeline[-1]
        return cls(scaler.mean_, scaler.scale_, lr.coef_, lr.intercept_)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist()}

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.scale) @ self.coef.T + self.intercept  # (n, 1): binary
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1 - p, p], axis=1)


def save_embedding_classifier(pipeline, run_dir: Path) -> None:
    atomic_write_json(run_dir / "embedding_classifier.json", EmbeddingClassifier.from_sklearn(pipeline).to_dict())


def load_embedding_classifier(run_dir: Path, recipe, lm) -> EmbeddingClassifier:
    path = run_dir / "embedding_classifier.json"
    if path.is_file():
        return EmbeddingClassifier(**json.loads(path.read_text()))
    cfg = recipe.data  # a run made before the classifier was saved: refit it as the run did
    tr = variant_splits(cfg)["train"]
    feats = pair_features(lm.backbone, tr["ref"], tr["alt"], DNATokenizer(), radius=cfg.vep_radius,
                          rc_average=cfg.rc_average)
    return EmbeddingClassifier.from_sklearn(fit_embedding_classifier(feats, tr["labels"], seed=cfg.seed))
