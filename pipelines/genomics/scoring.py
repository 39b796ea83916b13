"""The models of a finished genomics run, rebuilt from its folder, and their scores: shared by ``eval`` /
``predict`` / ``export`` (``genomics.verbs``, ``genomics.user_verbs``) and ``mambatune ensemble``.

What each task leaves in its run folder, and what is rebuilt from it:

- ``promoter``: ``model/`` (full) or ``adapter/`` + ``base/`` (PEFT from scratch) or ``adapter/`` on
  the pretrained base (``results.json`` ``base_model``);
- ``vep`` finetune: the pair classifier's ``model/model.safetensors`` or ``adapter/``, rebuilt on the
  recipe's architecture (seeded) or the pretrained base; ``vep`` embedding: the LM (``lm/model`` or
  the base) and ``embedding_classifier.json`` (the logistic regression's numbers; refitted on the
  training split for runs made before it was saved);
- ``vep_zeroshot``: the LM (``lm/model`` or the base); ``pretrain_dna``: ``model/``;
- an ensemble (``data.ensemble`` > 1, or made by ``mambatune ensemble``): its models in ``member-<k>/``
  (each as a single run keeps its model at its top, plus ``member.json``), whose class probabilities
  are averaged (each RC-averaged when ``data.rc_average``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mambatune.core import peft
from mambatune.core.atomic import atomic_write_json
from mambatune.core.checkpoints import load_pretrained
from mambatune.core.training.distributed import pick_device
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.datasets import PROMOTER_CLASSES
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, collate_windows, predict_logits
from mambatune.domains.genomics.vep import VariantPairDataset, lm_log_likelihood_ratio, pair_features

from .. import domain_run
from .. import ensemble_runs as shared
from .models import (
    base_config, classifier, language_model, load_embedding_classifier, pair_classifier, pair_probs, softmax,
)

LM_TASKS = ("vep_zeroshot", "pretrain_dna")


def open_run(run_dir):
    recipe, results = domain_run.open_run(run_dir, "genomics")
    return Path(run_dir), recipe, results


def class_names(recipe) -> list[str]:
    return ["non_promoter", "promoter"] if recipe.data.promoter_classes == "binary" else list(PROMOTER_CLASSES)


def device_of(recipe) -> torch.device:
    return pick_device(recipe.train.device)


def load_trained(run_dir: Path, pretrained_base):
    """A finished run's trained model: ``model/``, or ``adapter/`` on ``base/`` (a new model) or on
    ``pretrained_base()`` (the pretrained base with the run's head, built only when needed)."""
    if (run_dir / "model").is_dir():
        return load_pretrained(run_dir / "model")
    if not (run_dir / "adapter").is_dir():
        raise FileNotFoundError(f"{run_dir} has neither model/ nor adapter/: the run did not save a model")
    model = load_pretrained(run_dir / "base") if (run_dir / "base").is_dir() else pretrained_base()
    peft.load_adapter(model, run_dir / "adapter")
    return model


def load_classifier(run_dir: Path, recipe, results: dict):
    """The promoter classifier (see :func:`load_trained`)."""
    pretrained = results.get("base_model")
    return load_trained(run_dir, lambda: classifier(recipe, base_config(recipe, DNATokenizer(), pretrained),
                                                    len(class_names(recipe)), pretrained))


def load_pair_classifier(run_dir: Path, recipe, results: dict):
    """The supervised VEP model: the recipe's architecture (seeded, as in the run) or the pretrained base,
    with the saved weights (model/) or adapter (adapter/)."""
    from safetensors.torch import load_file

    pretrained = results.get("base_model")
    model = pair_classifier(recipe, base_config(recipe, DNATokenizer(), pretrained), pretrained)
    if (run_dir / "model" / "model.safetensors").is_file():
        model.load_state_dict(load_file(str(run_dir / "model" / "model.safetensors")))
    elif (run_dir / "adapter").is_dir():
        peft.load_adapter(model, run_dir / "adapter")
    else:
        raise FileNotFoundError(f"{run_dir} has neither model/ nor adapter/: the run did not save a model")
    return model


def member_dirs(run_dir: Path, recipe) -> list[Path]:
    """An ensemble run's ``member-0`` .. ``member-<K-1>`` folders; [] for a run of one model."""
    return shared.member_dirs(run_dir, recipe)


def member_model(member_dir: Path, k: int, recipe, results: dict) -> tuple:
    """(recipe with the member's model section and train seed, {"base_model": its base}) of ``member-<k>/``."""
    member, base = shared.member_model(member_dir, k, recipe, results, train_seed=True)
    return member, {"base_model": base}


def classifiers(run_dir: Path, recipe, results: dict) -> list[tuple]:
    """(folder, recipe, results) of each model to load: the run itself, or each member of an ensemble."""
    members = member_dirs(run_dir, recipe)
    if not members:
        return [(run_dir, recipe, results)]
    return [(m, *member_model(m, k, recipe, results)) for k, m in enumerate(members)]


def export_ensemble(run_dir: Path, recipe, results: dict, load, out: Path, meta: dict, combine: str) -> None:
    """Each member exported to ``out/member-<k>/`` (``load(folder, member recipe, member results)`` builds it;
    one loaded at a time), then ``out/export.json``, which names the members and how they ``combine``."""
    folders = []
    members = classifiers(run_dir, recipe, results)
    for k, (folder, member_recipe, member_results) in enumerate(members):
        domain_run.export_model(load(folder, member_recipe, member_results), out / folder.name, meta | {
            "ensemble_member": k, "seed": member_recipe.model.seed,
            "note": f"member {k} of an ensemble of {len(members)}: see ../export.json for how they combine"})
        if (out / folder.name / "model").is_dir():
            DNATokenizer(recipe.data.k).save(out / folder.name / "model")
        folders.append(folder.name)
    atomic_write_json(out / "export.json", meta | {
        "exported_from": str(run_dir), "ensemble": len(folders), "members": folders, "combine": combine,
        "written": folders})


def classifier_probs(folder: Path, recipe, results: dict, inputs) -> np.ndarray:
    """Class probabilities (n, classes) of the classifier saved in ``folder`` (a run's top or a member):
    ``inputs`` are sequences (promoter) or (refs, alts) (vep finetune); RC-averaged when ``data.rc_average``."""
    cfg = recipe.data
    if cfg.task == "promoter":
        model = load_classifier(folder, recipe, results).to(device_of(recipe))
        return class_probs(model, inputs, cfg.rc_average) if len(inputs) else \
            np.zeros((0, len(class_names(recipe))))
    model = load_pair_classifier(folder, recipe, results).to(device_of(recipe))
    refs, alts = inputs
    return pair_probs(model, VariantPairDataset(refs, alts, tokenizer=DNATokenizer()), cfg.rc_average)


def mean_probs(run_dir: Path, recipe, results: dict, inputs) -> np.ndarray:
    """One classifier's probabilities, or the mean of an ensemble's members' (loaded one at a time)."""
    return np.mean([classifier_probs(f, r, res, inputs) for f, r, res in classifiers(run_dir, recipe, results)], axis=0)


def lm_folder(run_dir: Path, recipe, results: dict) -> str:
    if recipe.data.task == "pretrain_dna":
        return str(run_dir / "model")
    if (run_dir / "lm" / "model").is_dir():
        return str(run_dir / "lm" / "model")
    if results.get("base_model"):
        return results["base_model"]
    raise FileNotFoundError(f"{run_dir} has no lm/model and no base model: the run did not save its LM")


def load_lm(run_dir: Path, recipe, results: dict):
    folder = lm_folder(run_dir, recipe, results)
    if not Path(folder).exists():
        raise FileNotFoundError(f"the run's language model {folder} no longer exists")
    return language_model(recipe, DNATokenizer(), folder)


def variant_scores(run_dir: Path, recipe, results: dict, refs: list[str], alts: list[str],
                   lm=None) -> dict[str, np.ndarray]:
    """{column: (n,) values}: ``score`` (-LLR) and ``llr`` for LM runs (``lm``: the run's LM, if loaded
    already), ``p_deleterious`` for supervised ones."""
    cfg, tok = recipe.data, DNATokenizer()
    if cfg.task in LM_TASKS:
        lm = lm if lm is not None else load_lm(run_dir, recipe, results)
        llr = lm_log_likelihood_ratio(lm.to(device_of(recipe)), refs, alts, tok, both_strands=cfg.rc_average)
        return {"score": -llr, "llr": llr}
    if cfg.task != "vep":
        raise ValueError(f"a {cfg.task} run scores sequences, not variants: give a FASTA or regions")
    if cfg.vep_method == "finetune":  # one model, or the mean of an ensemble's members
        p = mean_probs(run_dir, recipe, results, (refs, alts))[:, 1]
    else:
        lm = load_lm(run_dir, recipe, results).to(device_of(recipe))
        clf = load_embedding_classifier(run_dir, recipe, lm)
        feats = pair_features(lm.backbone, refs, alts, tok, radius=cfg.vep_radius, rc_average=cfg.rc_average)
        p = clf.predict_proba(feats)[:, 1]
    return {"p_deleterious": p}


def class_probs(model, sequences: list[str], rc_average: bool) -> np.ndarray:
    data = DNAWindowDataset(sequences, tokenizer=DNATokenizer())
    return softmax(predict_logits(model, data, rc_average=rc_average))


@torch.no_grad()
def bits_per_base(model, sequences: list[str]) -> np.ndarray:
    """Next-base cross-entropy of each sequence under a causal LM, in bits per base."""
    model.eval()
    device = next(model.parameters()).device
    tok, out = DNATokenizer(), []
    for s in sequences:
        batch = collate_windows([{"input_ids": torch.tensor(tok.encode(s)), "labels": torch.tensor(tok.encode(s))}])
        out.append(float(model(**{k: v.to(device) for k, v in batch.items()}).loss) / np.log(2))
    return np.asarray(out)



# -- how far an input is from what the model was trained on ----------------------------------------

DEMO_PROMOTER_LENGTH = 2000  # the demo promoter windows, read whole when data.window is null
LM_WINDOW = 1000  # an LM's pretraining windows when data.window is null (``data.lm_corpus``)
SHORT_FRACTION = 0.5  # an input under half the shortest training sequence is flagged


def trained_lengths(recipe, results: dict) -> tuple[int, int] | None:
    """(shortest, longest) bp of the sequences the run's model was trained on: a run on the user's sequences
    (results.json), a demo promoter run's windows, the windows of an LM pretrained in the run; None when
    unknown (a pretrained LM scored as is, a variant run)."""
    cfg = recipe.data
    if cfg.path:
        seqs = (results.get("data") or {}).get("sequences")
        return (int(seqs["length_min"]), int(seqs["length_max"])) if seqs else None
    if cfg.task == "promoter":
        n = cfg.window or DEMO_PROMOTER_LENGTH
    elif cfg.task in LM_TASKS and not results.get("base_model"):
        n = cfg.window or LM_WINDOW
    else:
        return None
    return n, n


def short_flag(length: int, trained: tuple[int, int] | None) -> str:
    """``short: 24 bp, trained on 600 bp`` for an input far shorter than every training sequence (under
    ``SHORT_FRACTION`` of the shortest), else empty: a confident label on it is out of the model's range."""
    if trained is None or length >= SHORT_FRACTION * trained[0]:
        return ""
    span = f"{trained[0]:,}" if trained[0] == trained[1] else f"{trained[0]:,}-{trained[1]:,}"
    return f"short: {length:,} bp, trained on {span} bp"


def short_flags(sequences: list[str | None], recipe, results: dict) -> list[str]:
    """:func:`short_flag` of each sequence that will be scored ("" for the others)."""
    trained = trained_lengths(recipe, results)
    return [short_flag(len(s), trained) if s is not None else "" for s in sequences]
