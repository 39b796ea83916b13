"""A genomics task recipe run on the user's sequences (``data.path``): binary, multi-class, multi-label or
regression, by the labels (``data.label_kind``).

The model is the recipe's (``model.pretrained``: a shipped DNA model by name, ``default``, a folder, or null
for a new one) with the head the labels call for, trained by the recipe's PEFT method through the shared
fine-tune path (``genomics.members.train_members``), with RC augmentation and RC-averaged inference as the
recipe sets them. Beside it, in the same run on the same splits: the same model from scratch (when the base
is pretrained and ``data.scratch_baseline``), a k-mer linear model with k (and C) chosen by inner
cross-validation on the training split (``data.kmer_choices``), and, when every sequence has one length, a
one-hot linear model (C chosen the same way). Logistic regression for classes, ridge for a number.

The run folder gets, besides what every run writes: ``splits.csv`` (which file row went to which split),
``predictions_test.csv`` (id, true label, predicted label, every class's probability; for regression
the prediction), ROC / PR curves (binary) and a report with what was read, changed and counted.

``data.ensemble: K`` trains K members of the model (``genomics.members``: seeds + k, each in ``member-<k>/``,
each with the recipe's whole budget), as the demo tasks do; the ensemble's outputs are the mean of the
members' class probabilities (multi-label: of each class's sigmoid; regression: of the predictions), which
``predictions_test.csv`` holds and the first row of ``results.json`` scores, each member's row after it, then
the scratch twin and the baselines, fitted once. ``mambatune ensemble`` combines finished runs on the same
data into the same layout (``genomics.ensemble``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mambatune.core import MambaForTask, build_head
from mambatune.core.atomic import atomic_write_text
from mambatune.domains.genomics import DNATokenizer
from mambatune.domains.genomics.baselines import baseline_scores, tuned_baseline
from mambatune.domains.genomics.metrics import (
    binary_metrics, multiclass_metrics, multilabel_metrics, plot_roc_pr, regression_metrics,
)
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, collate_windows, predict_logits
from mambatune.domains.genomics.vocab import checkpoint_tokenizer

from .. import domain_run
from .. import ensemble_runs as shared
from .models import (
    base_config, binary_eval_metrics, dna_model, pretrained_settings, scratch_train_config, training_summary,
)
from .members import member_probs, train_members
from .report import metrics_table
from .user_data import UserData, load_user_data

HEADS = {"binary": "classification", "multiclass": "classification", "multilabel": "multilabel",
         "regression": "regression"}
# metrics the training loop computes on the validation split, per label kind; the first picks the best step
# when the recipe's train.metric_for_best is not one of them
EVAL_METRICS = {"binary": ("auroc", "accuracy"), "multiclass": ("macro_f1", "accuracy"),
                "multilabel": ("auroc_macro", "f1_micro"), "regression": ("pearson", "r2")}
# what an ensemble averages, per label kind (``members.combine_text``)
OUTPUTS = {"binary": "classes", "multiclass": "classes", "multilabel": "multilabel", "regression": "regression"}
REPORT_COLUMNS = {"binary": ["auroc", "auprc", "mcc", "accuracy", "f1"],
                  "multiclass": ["accuracy", "macro_f1", "mcc", "auroc_macro"],
                  "multilabel": ["auroc_macro", "auroc_micro", "auprc_macro", "f1_micro", "f1_macro", "exact_match"],
                  "regression": ["pearson", "spearman", "r2", "mse", "mae"]}


# -- model ---------------------------------------------------------------------------------------

def head_spec(recipe, kind: str, n_classes: int) -> dict:
    """The recipe's head settings (pooling, dropout) with the kind and size the labels call for."""
    spec = {k: v for k, v in recipe.model.head.items() if k in ("pooling", "dropout")}
    spec["kind"] = HEADS[kind]
    if kind == "regression":
        spec["num_outputs"] = 1
    else:
        spec["num_labels"] = n_classes
    return spec


def user_model(recipe, config, spec: dict, pretrained: str | None) -> MambaForTask:
    torch.manual_seed(recipe.model.seed)
    if pretrained:
        return dna_model(pretrained, k=recipe.data.k, head=dict(spec),
                         config_overrides=pretrained_settings(recipe, pretrained)[0])
    head = dict(spec)
    kind = head.pop("kind")
    return MambaForTask(config, build_head(kind, config.d_model * (2 if config.rc_equivariant == "rcps" else 1), **head))


def collate_labelled(batch: list[dict]) -> dict[str, torch.Tensor]:
    """``collate_windows`` whose labels are stacked as they are (multi-hot rows stay rows, not token labels)."""
    out = collate_windows([{"input_ids": e["input_ids"]} for e in batch])
    if "labels" in batch[0]:
        out["labels"] = torch.stack([e["labels"] for e in batch])
    return out


def eval_metrics(kind: str):
    """The validation metrics of the training loop for ``kind`` (logits and labels as torch tensors)."""
    from sklearn import metrics as skm

    def binary(logits, labels):
        return binary_eval_metrics(logits, labels)

    def multiclass(logits, labels):
        pred, y = logits.argmax(-1).numpy(), labels.numpy()
        return {"macro_f1": float(skm.f1_score(y, pred, average="macro")), "accuracy": float((pred == y).mean())}

    def multilabel(logits, labels):
        p, y = torch.sigmoid(logits.float()).numpy(), labels.numpy().astype(int)
        both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
        auroc = float(skm.roc_auc_score(y[:, both], p[:, both], average="macro")) if both else 0.5
        return {"auroc_macro": auroc, "f1_micro": float(skm.f1_score(y, p >= 0.5, average="micro", zero_division=0))}

    def regression(logits, labels):
        p, y = logits.float().reshape(-1).numpy(), labels.float().reshape(-1).numpy()
        r = float(np.corrcoef(p, y)[0, 1]) if np.ptp(p) > 0 and np.ptp(y) > 0 else 0.0
        return {"pearson": r, "r2": float(skm.r2_score(y, p))}

    return {"binary": binary, "multiclass": multiclass, "multilabel": multilabel, "regression": regression}[kind]


def to_outputs(logits: torch.Tensor, kind: str, scale: tuple[float, float]) -> np.ndarray:
    """Model logits -> class probabilities (n, classes), or predictions (n,) on the target's own scale."""
    logits = logits.float()
    if kind == "multilabel":
        return torch.sigmoid(logits).numpy()
    if kind == "regression":
        return logits.reshape(-1).numpy() * scale[1] + scale[0]
    return torch.softmax(logits, -1).numpy()


# -- the task ------------------------------------------------------------------------------------

def run_user_sequences(recipe, run_dir: Path, pretrained: str | None) -> dict | None:
    cfg = recipe.data
    data = load_user_data(cfg)
    on_main = domain_run.is_main_process()
    if on_main:
        data.splits.write(run_dir)
        print(f"data: {data.format} {cfg.path}: {data.sizes()} ({data.splits.how}); labels {data.space.kind} "
              f"({data.space.how}); {data.counts.text()}", flush=True)
    kind, classes = data.space.kind, data.space.classes
    tok = checkpoint_tokenizer(pretrained, cfg.k) if pretrained else DNATokenizer(cfg.k)
    targets = {s: v.values for s, v in data.labels.items()}
    scale = (0.0, 1.0)
    if kind == "regression":  # the model learns standardised targets; predictions are scaled back
        y = targets["train"]
        scale = (float(y.mean()), float(y.std()) or 1.0)
        targets = {s: (v - scale[0]) / scale[1] for s, v in targets.items()}
    datasets = {s: DNAWindowDataset(data.sequences[s], targets[s], tok, rc_augment=cfg.rc_augment and s == "train")
                for s in ("train", "val", "test")}
    notes = []
    metric = recipe.train.metric_for_best
    if metric != "loss" and metric not in EVAL_METRICS[kind]:
        notes.append(f"train.metric_for_best={metric} is not a {kind} metric: the best step is picked by "
                     f"{EVAL_METRICS[kind][0]} on the validation split")
        recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, metric_for_best=EVAL_METRICS[kind][0]))
    if recipe.model.head.get("kind") not in (None, HEADS[kind]):
        notes.append(f"model.head.kind={recipe.model.head['kind']} replaced by {HEADS[kind]}: the labels are {kind}")
    spec = head_spec(recipe, kind, len(classes))
    config = base_config(recipe, tok, pretrained)
    metrics_fn = eval_metrics(kind)
    # the model, or the data.ensemble members one after another (member-<k>/), on every rank
    trained = train_members(recipe, run_dir, pretrained, lambda r, p: user_model(r, config, spec, p), datasets,
                            collate_labelled, metrics_fn, save_base=True)
    scratch = None
    if pretrained and cfg.scratch_baseline:  # trained by every rank, like the model
        scratch, _, _ = domain_run.train_model(user_model(recipe, config, spec, None),
                                               scratch_train_config(recipe, run_dir, "scratch"), datasets["train"],
                                               datasets["val"], collate_labelled, metrics_fn)
    if not on_main:
        return None
    eval_batch = recipe.train.eval_batch_size or recipe.train.batch_size

    def outputs(model):
        return to_outputs(predict_logits(model, datasets["test"], eval_batch, cfg.rc_average), kind, scale)

    # the model's test outputs, or the ensemble's (the members' mean) and each member's (data.ensemble)
    preds, extra = member_probs(recipe, pretrained, trained, outputs, OUTPUTS[kind])
    if scratch is not None:
        preds["same model from scratch (full)"] = outputs(scratch)
    baselines = fit_baselines(recipe, data, preds) if recipe.eval.baselines else {}
    out = {"task": cfg.task, "data": data.describe(), "test": {}, "sizes": data.sizes(),
           "training": training_summary(trained[0][1]), "summary": trained[0][2], "baseline_settings": baselines,
           "tokenizer": {"kind": "dna", "k": tok.k}, "notes": notes + pretrained_settings(recipe, pretrained)[1],
           **extra}
    out["test"] = score_test_outputs(run_dir, recipe, data, preds, member_names(out))
    if kind == "regression":
        out["target_scale"] = {"mean": scale[0], "sd": scale[1]}
    return out


def member_names(results: dict) -> set[str]:
    """The rows of an ensemble's members in ``results["test"]`` (none for a run of one model)."""
    return {m["name"] for m in (results.get("ensemble") or {}).get("members", [])}


def score_test_outputs(run_dir: Path, recipe, data: UserData, preds: dict, unplotted: set[str] = frozenset()) -> dict:
    """{model: test metrics} of every model's test outputs; the ROC / PR curves of a binary task (of every
    model but ``unplotted``); ``predictions_test.csv`` of the first model (the ensemble's mean, for one)."""
    kind, y = data.space.kind, data.labels["test"].values
    metrics = {m: score(kind, y, p, recipe.data) for m, p in preds.items()}
    if kind == "binary":
        plot_roc_pr(y, {m: p[:, 1] for m, p in preds.items() if m not in unplotted}, run_dir / "plots",
                    title=recipe.name)
    write_predictions(run_dir / "predictions_test.csv", data, next(iter(preds.values())), kind)
    return metrics


def fit_baselines(recipe, data: UserData, preds: dict) -> dict:
    """Fits the k-mer (and, for sequences of one length, one-hot) baselines on the training split; adds their
    test outputs to ``preds``; returns the settings inner CV chose, or why a baseline was left out."""
    cfg, kind = recipe.data, data.space.kind
    train, test = data.sequences["train"], data.sequences["test"]
    y = data.labels["train"].values
    lengths = {len(s) for s in train + test}
    names = [f"k-mer {'ridge' if kind == 'regression' else 'logistic'} regression (k by inner CV)"]
    if len(lengths) == 1:
        names.append(f"one-hot {'ridge' if kind == 'regression' else 'logistic'} regression")
    domain_run.announce_baselines(names)
    out = {}
    for features, label in zip(("kmer", "onehot"), names):
        model, chosen, cv_score = tuned_baseline(features, kind, train, y, ks=tuple(cfg.kmer_choices), seed=cfg.seed)
        preds[label] = full_width(baseline_scores(model, kind, test), model, kind, len(data.space.classes))
        out[label] = {**chosen, "inner_cv_score": cv_score, "inner_cv_metric": report_metric(kind)}
    if len(lengths) > 1:
        out["one-hot logistic regression"] = (f"not fitted: one-hot features need sequences of one length; these "
                                              f"have {len(lengths)} lengths ({min(lengths)}-{max(lengths)} bp)")
    return out


def report_metric(kind: str) -> str:
    return {"binary": "AUROC", "multiclass": "accuracy", "multilabel": "macro AUROC", "regression": "R^2"}[kind]


def full_width(probs: np.ndarray, model, kind: str, n_classes: int) -> np.ndarray:
    """A single-label classifier's probabilities with a column for every class, also those the training
    split lacked (probability 0)."""
    if kind not in ("binary", "multiclass") or probs.shape[1] == n_classes:
        return probs
    full = np.zeros((len(probs), n_classes))
    full[:, model.classes_] = probs
    return full


def score(kind: str, y: np.ndarray, p: np.ndarray, cfg) -> dict:
    if kind == "binary":
        return binary_metrics(y, p[:, 1], n_boot=cfg.n_boot, seed=cfg.seed)
    if kind == "multiclass":
        return multiclass_metrics(y, p, n_boot=cfg.n_boot, seed=cfg.seed)
    if kind == "multilabel":
        return multilabel_metrics(y, p, n_boot=cfg.n_boot, seed=cfg.seed)
    return regression_metrics(y, p, n_boot=cfg.n_boot, seed=cfg.seed)


def label_text(values: np.ndarray, kind: str, classes: list[str], separator: str = ";") -> list[str]:
    if kind == "regression":
        return [repr(float(v)) for v in values]
    if kind == "multilabel":
        return [separator.join(c for c, on in zip(classes, row) if on) for row in values]
    return [classes[int(v)] for v in values]


def write_predictions(path: Path, data: UserData, outputs: np.ndarray, kind: str) -> None:
    """``predictions_test.csv``: id, the true label, the prediction, and every class's probability
    (``p_<class>``; multi-label: each class's own probability, predicted at >= 0.5)."""
    classes = data.space.classes
    cols = {"id": data.ids["test"], "label": label_text(data.labels["test"].values, kind, classes)}
    if kind == "regression":
        cols["prediction"] = outputs.astype(float)
    else:
        picked = (outputs >= 0.5).astype(int) if kind == "multilabel" else outputs.argmax(1)
        cols["predicted"] = label_text(picked, kind, classes)
        for j, c in enumerate(classes):
            cols[f"p_{c}"] = outputs[:, j].astype(float)
    atomic_write_text(path, pl.DataFrame(cols).write_csv())


# -- report --------------------------------------------------------------------------------------

def write_report(run_dir: Path, recipe, results: dict) -> None:
    cfg, d = recipe.data, results["data"]
    kind = d["labels"]["kind"]
    settings = results.get("baseline_settings") or {}
    chosen = "; ".join(f"{name}: {v}" if isinstance(v, str) else
                       f"{name}: " + ", ".join(f"{k}={x:g}" for k, x in v.items() if k not in ("inner_cv_metric",))
                       + f" (inner CV {v['inner_cv_metric']})" for name, v in settings.items())
    regions = d.get("regions") or {}
    region_text = "".join(f"\nRegions ({'data.path' if k == 'data' else k}): " + words(v) + "."
                          for k, v in regions.items() if v)
    seq = d["sequences"]
    replaced = ", ".join(f"{c!r} x{n}" for c, n in seq["non_acgtn_mapped_to_n"].items()) or "none"
    notes = "\n".join(f"- {n}" for n in d["notes"] + results.get("notes", [])) or "- none"
    classes = ", ".join(d["labels"]["classes"]) or "a number"
    tail = domain_run.report_tail(run_dir, results, results.get("training"), "", "Curves")
    ensemble = shared.ensemble_text(results, "models")
    predicted_by = "ensemble (the mean of its members)" if results.get("ensemble") else "first model"
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · data: `{cfg.path}` ({d['format']}) · base model:
`{domain_run.base_model_text(recipe, results)}` · tokenizer: DNA, k = {results['tokenizer']['k']}

Labels: {kind} ({d['labels']['how']}; column `{cfg.label_column}`): {classes}.
Split: {d['split']}; examples per split: {d['sizes']} (`splits.csv`).
Sequences: {seq['sequences']} of {seq['length_min']:,}-{seq['length_max']:,} bp; upper-cased:
{seq['lower_case_upper_cased']}; characters other than ACGTN mapped to N: {replaced} (in
{seq['sequences_with_non_acgtn']} sequences); RNA read as DNA (U -> T): {seq.get('rna_u_read_as_t', 0)}; cropped to
data.max_length: {seq['cropped_to_max_length']}.{region_text}
RC augmentation in training: {cfg.rc_augment}; RC-averaged inference: {cfg.rc_average}.{ensemble}

Notes:
{notes}

## Test set (95 % bootstrap intervals, {cfg.n_boot} resamples)

{metrics_table(results['test'], REPORT_COLUMNS[kind])}

Baselines' settings: {chosen or 'none fitted (eval.baselines=false)'}.
Predictions of the {predicted_by}: `predictions_test.csv`.

{tail}"""
    atomic_write_text(run_dir / "report.md", text)


def words(counts: dict) -> str:
    """``{"regions_read": 3, "dropped": {"off_contig_end": 1}}`` -> ``regions read 3, dropped (off contig end 1)``."""
    def value(v):
        return f"({words(v) or 'none'})" if isinstance(v, dict) else str(v)
    return ", ".join(f"{k.replace('_', ' ')} {value(v)}" for k, v in counts.items())
