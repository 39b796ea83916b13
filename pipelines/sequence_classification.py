"""Generic sequence classification over a table of (sequence or text, label).

Reads a CSV / TSV / parquet file with polars, tokenizes bytes or characters,
splits it (the ``split`` column if there is one, else a stratified split),
trains a Mamba classifier with the recipe's PEFT method through the Trainer,
scores it (accuracy, macro-F1) next to baselines fitted in the same run
(majority class; character n-gram TF-IDF + logistic regression) and writes the
run folder::

    config.yaml  tokenizer.json  labels.json   what is needed to rebuild the model
    base/        the initial weights of a model trained from scratch (PEFT runs)
    adapter/     the trained parameters (PEFT runs)  |  model/ (full fine-tuning)
    checkpoints/ metrics.jsonl plots/ report.md results.json
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mambatune.core import MambaConfig, MambaForTask, build_head
from mambatune.core import peft
from mambatune.core.atomic import atomic_write_text
from mambatune.core.checkpoints import load_pretrained, save_pretrained
from mambatune.core.training import Precision

from .text_tokenizer import TextTokenizer

PACKAGE_DATA = Path(__file__).parent / "data"
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


@dataclass
class DataConfig:
    """path: CSV / TSV / parquet (relative paths: the working folder, then the recipe's folder, then
    the package's data folder); text_column: the sequence or text; label_column: the class;
    split_column: optional train / val / test per row; tokenizer: byte or char."""

    path: str = "license_snippets.csv"
    text_column: str = "text"
    label_column: str = "label"
    split_column: str | None = None
    tokenizer: str = "byte"
    max_length: int = 256
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tokenizer not in ("byte", "char"):
            raise ValueError(f"tokenizer must be 'byte' or 'char', got {self.tokenizer!r}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in (0, 1) with a sum below 1")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")


# -- data ----------------------------------------------------------------------------------------

def find_data(path: str, recipe_source: str | None = None) -> Path:
    candidates = [Path(path)]
    if recipe_source:
        candidates.append(Path(recipe_source).parent / path)
    candidates.append(PACKAGE_DATA / path)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"data file {path!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def read_table(path: Path):
    import polars as pl
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix in (".tsv", ".tab"):
        return pl.read_csv(path, separator="\t", infer_schema_length=0)
    return pl.read_csv(path, infer_schema_length=0)


def load_splits(cfg: DataConfig, source: str | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """{split: (texts, labels as strings)} for train, val and test."""
    from sklearn.model_selection import train_test_split

    table = read_table(find_data(cfg.path, source))
    for col in (cfg.text_column, cfg.label_column) + ((cfg.split_column,) if cfg.split_column else ()):
        if col not in table.columns:
            raise KeyError(f"column {col!r} is not in {cfg.path} (columns: {', '.join(table.columns)})")
    texts = [str(t) if t is not None else "" for t in table[cfg.text_column].to_list()]
    labels = [str(v) for v in table[cfg.label_column].to_list()]
    if cfg.split_column:
        out = {"train": ([], []), "val": ([], []), "test": ([], [])}
        for t, y, s in zip(texts, labels, table[cfg.split_column].to_list()):
            name = SPLIT_NAMES.get(str(s).lower())
            if name is None:
                raise ValueError(f"split value {s!r} is not one of {sorted(SPLIT_NAMES)}")
            out[name][0].append(t)
            out[name][1].append(y)
        return out
    idx = np.arange(len(texts))

    def strat(ids):
        ys = [labels[i] for i in ids]
        counts = {y: ys.count(y) for y in set(ys)}
        return ys if min(counts.values()) >= 2 else None

    rest, test = train_test_split(idx, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=strat(idx))
    train, val = train_test_split(rest, test_size=cfg.val_fraction / (1 - cfg.test_fraction), random_state=cfg.seed,
                                  stratify=strat(rest))
    return {name: ([texts[i] for i in ids], [labels[i] for i in ids])
            for name, ids in (("train", train), ("val", val), ("test", test))}


def encode(tokenizer: TextTokenizer, texts, labels, label_ids: dict[str, int], max_length: int) -> list[dict]:
    out = []
    for t, y in zip(texts, labels):
        if y not in label_ids:
            raise ValueError(f"label {y!r} was not seen in training (labels: {', '.join(label_ids)})")
        out.append({"input_ids": torch.tensor(tokenizer.encode(t, max_length)), "labels": torch.tensor(label_ids[y])})
    return out


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pads with id 0; attention_mask marks real tokens."""
    length = max(len(e["input_ids"]) for e in batch)
    ids = torch.zeros(len(batch), length, dtype=torch.long)
    mask = torch.zeros(len(batch), length, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"])
        ids[i, :n] = e["input_ids"]
        mask[i, :n] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if "labels" in batch[0]:
        out["labels"] = torch.stack([e["labels"] for e in batch])
    return out


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score
    pred = logits.argmax(-1).numpy()
    y = labels.numpy()
    return {"accuracy": float(accuracy_score(y, pred)), "macro_f1": float(f1_score(y, pred, average="macro"))}


# -- model ---------------------------------------------------------------------------------------

def head_spec(recipe, num_labels: int) -> dict:
    spec = dict(recipe.model.head)
    spec.setdefault("num_labels", num_labels)
    return spec


def build_model(recipe, tokenizer: TextTokenizer, num_labels: int) -> MambaForTask:
    """The base model with a fresh head: pretrained, or new from ``model.config`` sized to the tokenizer."""
    torch.manual_seed(recipe.model.seed)
    spec = head_spec(recipe, num_labels)
    if recipe.model.pretrained:
        model = load_pretrained(recipe.model.pretrained, head=spec, config_overrides=recipe.model.config or None)
        if model.config.vocab_size < tokenizer.vocab_size:
            raise ValueError(f"the pretrained model's vocabulary ({model.config.vocab_size}) is smaller than the "
                             f"{tokenizer.kind} tokenizer's ({tokenizer.vocab_size}); use a model trained on bytes")
        return model
    cfg = MambaConfig.from_dict({**recipe.model.config, "vocab_size": tokenizer.vocab_size, "pad_token_id": 0})
    kind = spec.pop("kind")
    return MambaForTask(cfg, build_head(kind, cfg.d_model * (2 if cfg.rc_equivariant == "rcps" else 1), **spec))


def uses_peft(recipe) -> bool:
    return bool(recipe.peft.methods)


def save_trained(model: MambaForTask, run_dir: Path, recipe) -> None:
    if uses_peft(recipe):
        peft.save_adapter(model, run_dir / "adapter")
    else:
        save_pretrained(model, run_dir / "model", meta={"recipe": recipe.name})


def load_trained(run_dir: str | Path, recipe=None) -> tuple[MambaForTask, TextTokenizer, list[str]]:
    """Rebuilds a run's trained model (base + adapter, or the fully fine-tuned model)."""
    from .recipe import load_resolved
    run_dir = Path(run_dir)
    recipe = recipe or load_resolved(run_dir)
    tokenizer = TextTokenizer.load(run_dir / "tokenizer.json")
    labels = json.loads((run_dir / "labels.json").read_text())
    if (run_dir / "model").is_dir():
        model = load_pretrained(run_dir / "model")
    else:
        if (run_dir / "base").is_dir():  # a model trained from scratch: its initial weights, head included
            model = load_pretrained(run_dir / "base")
        else:
            model = load_pretrained(recipe.model.pretrained, head=head_spec(recipe, len(labels)),
                                    config_overrides=recipe.model.config or None)
        peft.load_adapter(model, run_dir / "adapter")
    model.eval()
    return model, tokenizer, labels


# -- baselines -----------------------------------------------------------------------------------

def baselines(train, test) -> dict[str, dict[str, float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    (x_tr, y_tr), (x_te, y_te) = train, test
    # most frequent training label; ties go to the smallest label, so the baseline is reproducible
    majority = min(set(y_tr), key=lambda y: (-y_tr.count(y), str(y)))
    pred = [majority] * len(y_te)
    out = {"majority_class": {"accuracy": accuracy_score(y_te, pred), "macro_f1": f1_score(y_te, pred, average="macro")}}
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=1, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(x_tr), y_tr)
    pred = clf.predict(vec.transform(x_te))
    out["char_ngram_logreg"] = {"accuracy": accuracy_score(y_te, pred), "macro_f1": f1_score(y_te, pred, average="macro")}
    return {k: {m: float(v) for m, v in d.items()} for k, d in out.items()}


# -- the pipeline --------------------------------------------------------------------------------

def run(recipe) -> Path:
    """Trains, evaluates and writes the run folder; returns it. Under torchrun every rank trains;
    only the main rank scores the test set, fits the baselines and writes the files."""
    from .domain_run import announce_baselines, is_main_process, train_model
    from .recipe import save_resolved
    start = time.time()
    run_dir = Path(recipe.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    on_main = is_main_process()
    if on_main:
        save_resolved(recipe, run_dir)
    splits = load_splits(recipe.data, recipe.source)
    train_texts, train_labels = splits["train"]
    if not train_texts:
        raise ValueError("the training split is empty")
    label_names = sorted(set(train_labels))
    label_ids = {y: i for i, y in enumerate(label_names)}
    tokenizer = TextTokenizer.fit(recipe.data.tokenizer, train_texts)
    if on_main:
        tokenizer.save(run_dir / "tokenizer.json")
        atomic_write_text(run_dir / "labels.json", json.dumps(label_names) + "\n")
    data = {name: encode(tokenizer, t, y, label_ids, recipe.data.max_length) for name, (t, y) in splits.items()}

    model = build_model(recipe, tokenizer, len(label_names))
    if uses_peft(recipe) and not recipe.model.pretrained and on_main:
        save_pretrained(model, run_dir / "base", meta={"note": "initial weights of a model trained from scratch"})
    model, result, summary = train_model(model, recipe.train, data["train"], data["val"] or None, collate,
                                         classification_metrics, recipe.peft)
    if not on_main:
        return run_dir
    save_trained(model, run_dir, recipe)
    test_metrics = score(model, data["test"], recipe.train) if data["test"] else {}
    base = {}
    if recipe.eval.baselines and data["test"]:
        announce_baselines(["majority_class", "char_ngram_logreg"])
        base = baselines(splits["train"], splits["test"])
    results = {"test": test_metrics, "val": result.last_eval, "baselines": base, "steps": result.steps,
               "best_step": result.best_step, "stopped_early": result.stopped_early,
               "train_seconds": result.seconds, "total_seconds": time.time() - start,
               "sizes": {k: len(v) for k, v in data.items()}, "labels": label_names}
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    write_report(run_dir, recipe, results, summary)
    return run_dir


def write_report(run_dir: Path, recipe, results: dict, summary: str) -> None:
    from mambatune.core.training import read_metrics
    records = read_metrics(run_dir / "metrics.jsonl")
    peak = max((r.get("peak_memory_mb", 0) for r in records), default=0)
    tps = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    methods = ", ".join(m.method for m in recipe.peft.methods) or "full fine-tuning"
    rows = [("mamba (" + methods + ")", results["test"])] + list(results["baselines"].items())
    table = "\n".join(f"| {name} | {m.get('accuracy', float('nan')):.3f} | {m.get('macro_f1', float('nan')):.3f} |"
                      for name, m in rows)
    plots = "\n".join(f"![{p.stem}](plots/{p.name})" for p in sorted((run_dir / "plots").glob("*.png")))
    text = f"""# {recipe.name}

Recipe: `{recipe.source}` · pipeline `{recipe.pipeline}` · method: {methods}

Data: `{recipe.data.path}`; examples train / val / test: {results['sizes']['train']} / {results['sizes']['val']} /
{results['sizes']['test']}; {len(results['labels'])} classes ({', '.join(results['labels'])}).

## Test set

| model | accuracy | macro-F1 |
|---|---|---|
{table}

Training: {results['steps']} optimizer steps, best step {results['best_step']}
(by validation {recipe.train.metric_for_best}), {'stopped early' if results['stopped_early'] else 'ran to the end'};
{results['train_seconds']:.1f} s; {np.median(tps) if tps else 0:,.0f} tokens/s (median); peak memory {peak:,.0f} MiB.

## Trainable parameters

```
{summary}
```

## Curves

{plots}
"""
    atomic_write_text(run_dir / "report.md", text)


def evaluate(run_dir: str | Path, split: str | None = None) -> dict[str, float]:
    """Scores a finished run on one of its splits (default: the recipe's eval.split)."""
    from .recipe import load_resolved
    run_dir = Path(run_dir)
    recipe = load_resolved(run_dir)
    model, tokenizer, labels = load_trained(run_dir, recipe)
    split = split or recipe.eval.split
    texts, ys = load_splits(recipe.data, recipe.source)[split]
    data = encode(tokenizer, texts, ys, {y: i for i, y in enumerate(labels)}, recipe.data.max_length)
    logits = predict_logits(model, data)
    metrics = classification_metrics(logits, torch.stack([e["labels"] for e in data]))
    metrics["examples"] = len(data)
    return metrics


@torch.no_grad()
def score(model: MambaForTask, data: list[dict], train_cfg) -> dict[str, float]:
    """Mean loss, accuracy and macro-F1 of ``model`` on encoded examples, batched and autocast as the
    Trainer evaluates (``train_cfg``: eval_batch_size or batch_size, precision)."""
    device = next(model.parameters()).device
    batch_size = train_cfg.eval_batch_size or train_cfg.batch_size
    model.eval()
    logits, loss_sum = [], 0.0
    for i in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in collate(data[i:i + batch_size]).items()}
        with Precision(train_cfg.precision, device.type).autocast():
            out = model(**batch)
        logits.append(out.logits.float().cpu())
        loss_sum += float(out.loss) * len(batch["labels"])
    labels = torch.stack([e["labels"] for e in data])
    return {"loss": loss_sum / len(data), **classification_metrics(torch.cat(logits), labels)}


@torch.no_grad()
def predict_logits(model: MambaForTask, data: list[dict], batch_size: int = 32) -> torch.Tensor:
    out = []
    for i in range(0, len(data), batch_size):
        batch = collate([{"input_ids": e["input_ids"]} for e in data[i:i + batch_size]])
        out.append(model(batch["input_ids"], batch["attention_mask"]).logits.float())
    return torch.cat(out)


def predict(run_dir: str | Path, texts: list[str]) -> list[dict]:
    """[{"text", "label", "probability"}] for each text."""
    from .recipe import load_resolved
    recipe = load_resolved(run_dir)
    model, tokenizer, labels = load_trained(run_dir, recipe)
    data = [{"input_ids": torch.tensor(tokenizer.encode(t, recipe.data.max_length))} for t in texts]
    probs = torch.softmax(predict_logits(model, data), -1)
    return [{"text": t, "label": labels[int(p.argmax())], "probability": float(p.max())} for t, p in zip(texts, probs)]


def read_inputs(source: str, recipe) -> list[str]:
    """Texts from a CSV / TSV / parquet (the recipe's text column), a .txt (one per line), or the string itself."""
    p = Path(source)
    if not p.is_file():
        return [source]
    if p.suffix.lower() in (".csv", ".tsv", ".tab", ".parquet"):
        table = read_table(p)
        col = recipe.data.text_column
        if col not in table.columns:
            raise KeyError(f"column {col!r} is not in {p} (columns: {', '.join(table.columns)})")
        return [str(t) for t in table[col].to_list()]
    return [line for line in p.read_text().splitlines() if line.strip()]


def export(run_dir: str | Path, out: str | Path) -> Path:
    """A standalone model folder: LoRA merged into the base weights, our safetensors format."""
    model, _, labels = load_trained(run_dir)
    if getattr(model, "peft_state", None) is not None:
        methods = {m.method for m in model.peft_state.config.methods}
        if methods - {"lora", "head_only", "full", "partial", "top_layers"}:
            raise ValueError(f"export merges LoRA only; this run also uses {sorted(methods - {'lora'})}, whose "
                             "parameters have no place in a plain model. Keep the run folder (base + adapter) instead.")
        if "lora" in methods:
            peft.merge(model, unload=True)
        model.peft_state = None
    return save_pretrained(model, out, meta={"labels": labels, "exported_from": str(run_dir)})
