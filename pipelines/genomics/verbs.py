"""``mambatune eval / predict / export`` on a finished genomics run.

What each task leaves in its run folder, and what the verbs rebuild from it:

- ``promoter``: ``model/`` (full) or ``adapter/`` + ``base/`` (PEFT from scratch) or ``adapter/`` on
  the pretrained base (``results.json`` ``base_model``);
- ``vep`` finetune: the pair classifier's ``model/model.safetensors`` or ``adapter/``, rebuilt on the
  recipe's architecture (seeded) or the pretrained base; ``vep`` embedding: the LM (``lm/model`` or
  the base) and ``embedding_classifier.json`` (the logistic regression's numbers; refitted on the
  training split for runs made before it was saved);
- ``vep_zeroshot``: the LM (``lm/model`` or the base); ``pretrain_dna``: ``model/``.

``predict`` reads a FASTA (one record = one sequence), a BED / CSV / TSV / parquet of regions or a
VCF (both with ``--genome``); every record is one output row, and a record that cannot be scored
keeps its row with a ``note`` saying why; counts go to stderr.

An ensemble run (``data.ensemble`` > 1, or made by ``mambatune ensemble``; promoter and vep finetune)
holds its models in ``member-<k>/`` (each as a single run keeps its model at its top, plus
``member.json``: its seeds, model section and base model); ``eval`` and ``predict`` average the
members' class probabilities (each RC-averaged when ``data.rc_average``), ``export`` writes each
member to ``out/member-<k>/`` and an ``export.json`` that names the ensemble.
"""
from __future__ import annotations

import gzip
import sys
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mambatune.core import peft
from mambatune.core.atomic import atomic_write_json
from mambatune.core.checkpoints import load_pretrained
from mambatune.core.training.distributed import pick_device
from mambatune.domains.genomics import DNATokenizer, Genome, InvalidSequenceError, read_intervals, read_vcf
from mambatune.domains.genomics.datasets import PROMOTER_CLASSES
from mambatune.domains.genomics.metrics import binary_metrics, multiclass_metrics
from mambatune.domains.genomics.sequence_data import DNAWindowDataset, center_crop, collate_windows, predict_logits
from mambatune.domains.genomics.vcf import variant_kind
from mambatune.domains.genomics.vep import (
    VariantPairDataset, fit_embedding_classifier, haplotype_windows, lm_log_likelihood_ratio, pair_features,
    variant_pairs,
)

from . import domain_run
from . import ensemble_runs as shared
from . import genomics as g

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")
REGION_SUFFIXES = (".bed", ".csv", ".tsv", ".parquet", ".pq")
VARIANT_FLANK = 500  # the demo variant windows are 1,001 bp with the variant at the centre
LM_TASKS = ("vep_zeroshot", "pretrain_dna")


# -- the run's models ----------------------------------------------------------------------------

def open_run(run_dir):
    recipe, results = domain_run.open_run(run_dir, "genomics")
    return Path(run_dir), recipe, results


def class_names(recipe) -> list[str]:
    return ["non_promoter", "promoter"] if recipe.data.promoter_classes == "binary" else list(PROMOTER_CLASSES)


def device_of(recipe) -> torch.device:
    return pick_device(recipe.train.device)


def load_classifier(run_dir: Path, recipe, results: dict):
    """The promoter classifier: model/, or base/ (from scratch) or the pretrained base + adapter/."""
    if (run_dir / "model").is_dir():
        return load_pretrained(run_dir / "model")
    if not (run_dir / "adapter").is_dir():
        raise FileNotFoundError(f"{run_dir} has neither model/ nor adapter/: the run did not save a model")
    if (run_dir / "base").is_dir():
        model = load_pretrained(run_dir / "base")
    else:
        pretrained = results.get("base_model")
        tok = DNATokenizer()
        model = g.classifier(recipe, g.base_config(recipe, tok, pretrained), len(class_names(recipe)), pretrained)
    peft.load_adapter(model, run_dir / "adapter")
    return model


def load_pair_classifier(run_dir: Path, recipe, results: dict):
    """The supervised VEP model: the recipe's architecture (seeded, as in the run) or the pretrained base,
    with the saved weights (model/) or adapter (adapter/)."""
    from safetensors.torch import load_file

    pretrained = results.get("base_model")
    model = g.pair_classifier(recipe, g.base_config(recipe, DNATokenizer(), pretrained), pretrained)
    if (run_dir / "model" / "model.safetensors").is_file():
        model.load_state_dict(load_file(str(run_dir / "model" / "model.safetensors")))
    elif (run_dir / "adapter").is_dir():
        peft.load_adapter(model, run_dir / "adapter")
    else:
        raise FileNotFoundError(f"{run_dir} has neither model/ nor adapter/: the run did not save a model")
    return model


# -- ensembles (data.ensemble > 1, or `mambatune ensemble`): member-<k>/ folders -----------------

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
    return g.pair_probs(model, VariantPairDataset(refs, alts, tokenizer=DNATokenizer()), cfg.rc_average)


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
    return g.language_model(recipe, DNATokenizer(), folder)


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
    tr = g.variant_splits(cfg)["train"]
    feats = pair_features(lm.backbone, tr["ref"], tr["alt"], DNATokenizer(), radius=cfg.vep_radius,
                          rc_average=cfg.rc_average)
    return EmbeddingClassifier.from_sklearn(fit_embedding_classifier(feats, tr["labels"], seed=cfg.seed))


# -- scoring (shared by eval and predict) --------------------------------------------------------

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
    return g.softmax(predict_logits(model, data, rc_average=rc_average))


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


# -- eval ----------------------------------------------------------------------------------------

def evaluate(run_dir, split: str | None = None) -> dict:
    """The run's model rescored on ``split`` with the run's metric functions (its own model only; the
    baselines are in results.json)."""
    run_dir, recipe, results = open_run(run_dir)
    split = domain_run.check_split(split, recipe)
    if recipe.data.path:  # a run on the user's files
        from . import genomics_user_verbs
        return genomics_user_verbs.evaluate(run_dir, recipe, results, split)
    cfg, tok = recipe.data, DNATokenizer()
    name = next(iter(results["test"]))
    if cfg.task == "promoter":
        x, y = g.promoter_splits(cfg)[split]
        probs = mean_probs(run_dir, recipe, results, x)  # one model, or the mean of an ensemble's members
        metrics = (binary_metrics(np.asarray(y), probs[:, 1], n_boot=cfg.n_boot, seed=cfg.seed)
                   if cfg.promoter_classes == "binary" else
                   multiclass_metrics(np.asarray(y), probs, n_boot=cfg.n_boot, seed=cfg.seed))
        n = len(y)
    elif cfg.task in ("vep", "vep_zeroshot"):
        v = g.variant_splits(cfg)[split]
        scores = variant_scores(run_dir, recipe, results, v["ref"], v["alt"])
        s = scores.get("p_deleterious", scores.get("score"))
        metrics = binary_metrics(np.asarray(v["labels"]), s, threshold=0.5 if "p_deleterious" in scores else 0.0,
                                 n_boot=cfg.n_boot, seed=cfg.seed)
        n = len(v["labels"])
    else:
        corpus = g.lm_corpus(cfg, split)
        nll = g.lm_loss(load_lm(run_dir, recipe, results).to(device_of(recipe)),
                        DNAWindowDataset(corpus, tokenizer=tok, lm=True))
        metrics = {"nats_per_base": nll, "bits_per_base": nll / np.log(2)}
        n = len(corpus)
    members = len(member_dirs(run_dir, recipe))
    return {"task": cfg.task, "split": split, "model": name, "examples": n, "metrics": metrics} | \
        ({"members": members} if members else {})


# -- predict: inputs -----------------------------------------------------------------------------

@dataclass
class GenomicsInputs:
    """What ``predict`` scores: one row per input record. ``sequences`` (or ``refs``/``alts`` for
    variants) hold None where a record cannot be scored, and ``notes`` say why."""

    kind: str  # "sequences" | "variants"
    rows: list[dict]
    sequences: list[str | None] = field(default_factory=list)
    refs: list[str | None] = field(default_factory=list)
    alts: list[str | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def suffix_of(path: Path) -> str:
    return Path(path.name.lower().removesuffix(".gz")).suffix


def read_fasta_records(path: Path) -> list[tuple[str, str]]:
    """(id, sequence) of every record (the id is the header's first word); plain or gzip."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    records, name, parts = [], None, []
    with opener(path, "rt") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(parts)))
                name, parts = (line[1:].split() or [f"record{len(records) + 1}"])[0], []
            elif line and name is not None:
                parts.append(line)
            elif line:
                raise ValueError(f"{path}: sequence text before the first '>' header; is it a FASTA file?")
    if name is not None:
        records.append((name, "".join(parts)))
    return records


def read_inputs(source: str, recipe, genome: str | None = None) -> GenomicsInputs:
    """Sequences of a FASTA, or of BED / CSV / TSV / parquet regions in ``genome``, or variants of a
    VCF in ``genome``, each prepared as the run prepared its windows (central ``data.window`` bp)."""
    if recipe.data.path and suffix_of(Path(source)) != ".vcf":  # a run on the user's files: read as it read them
        from . import genomics_user_verbs
        return genomics_user_verbs.read_inputs(source, recipe, genome=genome)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"input {source} not found; genomics predict reads a FASTA, a BED / CSV / TSV / "
                                "parquet of regions (with --genome) or a VCF (with --genome)")
    kind = suffix_of(path)
    task = recipe.data.task
    if kind in FASTA_SUFFIXES + REGION_SUFFIXES and task == "vep":
        raise ValueError(f"a vep run scores variants: give a VCF and --genome, not {path.name}")
    if kind == ".vcf" and task == "promoter":
        raise ValueError(f"a promoter run scores sequences: give a FASTA, or regions with --genome, not {path.name}")
    if kind in FASTA_SUFFIXES:
        return sequence_inputs(read_fasta_records(path), recipe, f"{path.name} has no FASTA records")
    if kind not in REGION_SUFFIXES + (".vcf",):
        raise ValueError(f"cannot tell what {path.name} holds: use .fa/.fasta (sequences), .bed/.csv/.tsv/.parquet "
                         "(regions) or .vcf (variants), optionally gzipped")
    if genome is None:
        raise ValueError(f"{path.name} gives coordinates: pass --genome <reference FASTA> to read its sequences")
    with Genome(genome) as ref:
        if kind == ".vcf":
            return variant_inputs(path, recipe, ref)
        return region_inputs(path, recipe, ref)


def sequence_inputs(records: list[tuple[str, str]], recipe, empty_message: str,
                    extra: list[dict] | None = None) -> GenomicsInputs:
    if not records:
        raise ValueError(empty_message)
    window = recipe.data.window
    out = GenomicsInputs("sequences", [])
    tok = DNATokenizer()
    for i, (name, seq) in enumerate(records):
        out.rows.append({"id": name, **(extra[i] if extra else {}), "length": len(seq)})
        note, scored = "", None
        if not seq:
            note = "empty sequence: not scored"
            out.counts["skipped_empty"] += 1
        else:
            cropped = center_crop(seq, window)
            try:
                tok.encode(cropped, name=name)
                scored = cropped
            except InvalidSequenceError as err:
                note = f"not scored: {err}"
                out.counts["skipped_invalid"] += 1
            if scored is not None and len(cropped) < len(seq):
                note = f"cropped to the central {window} bp (as in training)"
                out.counts["cropped"] += 1
            elif scored is not None and window and len(seq) < window:
                note = f"shorter than the trained window ({window} bp): scored as is"
                out.counts["shorter_than_window"] += 1
        out.sequences.append(scored)
        out.notes.append(note)
    out.counts["records"] = len(records)
    out.counts["scored"] = sum(s is not None for s in out.sequences)
    return out


def region_inputs(path: Path, recipe, genome: Genome) -> GenomicsInputs:
    """The central ``data.window`` bp of each region (strand-aware; N beyond contig ends), the window the
    run's model reads; regions that fail validation are skipped and counted."""
    df, report = read_intervals(path, contig_lengths=genome.contigs, on_invalid="skip")
    records, extra = [], []
    strands = df["strand"].to_list() if "strand" in df.columns else ["+"] * df.height
    names = df["name"].to_list() if "name" in df.columns else [None] * df.height
    for chrom, start, end, strand, name in zip(df["chrom"].to_list(), df["start"].to_list(), df["end"].to_list(),
                                               strands, names):
        length = recipe.data.window or (end - start)
        seq = genome.window(chrom, start + (end - start) // 2, length, strand if strand in ("+", "-") else "+").sequence
        records.append((str(name) if name else f"{chrom}:{start}-{end}", seq))
        extra.append({"chrom": chrom, "start": start, "end": end, "strand": strand})
    out = sequence_inputs(records, recipe, f"{path.name}: no valid region ({report})", extra)
    out.counts.update({f"regions_{k}": v for k, v in report.dropped.items()})
    for row in out.rows:
        row["length"] = row["end"] - row["start"]
    return out


def variant_inputs(path: Path, recipe, genome: Genome) -> GenomicsInputs:
    """Ref / alt windows (1,001 bp around the variant, cropped to ``data.window``) of the SNVs of a VCF,
    normalised against ``genome`` (fixes and drops counted). Other variant kinds get equal-length
    haplotype windows under a zero-shot LM run (:func:`haplotype_windows`); a supervised run, trained on
    SNVs, keeps their rows unscored."""
    df, report = read_vcf(path, genome=genome, on_invalid="skip")
    out = GenomicsInputs("variants", [])
    out.counts.update(report.as_dict())
    if df.height == 0:
        raise ValueError(f"{path.name}: no variant left to score ({report})")
    ids = df["id"].to_list()
    for i, (chrom, pos, ref, alt, kind, fix) in enumerate(zip(*(df[c].to_list() for c in
                                                                 ("chrom", "pos", "ref", "alt", "kind", "fix")))):
        out.rows.append({"id": ids[i] if ids[i] not in (None, ".") else f"{chrom}:{pos}:{ref}>{alt}", "chrom": chrom,
                         "pos": pos, "ref": ref, "alt": alt, "fix": fix})
        if kind != "snv" and recipe.data.task in LM_TASKS:
            length = recipe.data.window or 2 * VARIANT_FLANK + 1
            wide_length = 2 * (length + len(ref) + len(alt)) + 1
            r, a = haplotype_windows(genome.window(chrom, pos - 1, wide_length).sequence, wide_length // 2,
                                     ref, alt, length)
            out.refs.append(r)
            out.alts.append(a)
            out.notes.append(f"{kind}: equal-length haplotype windows (REF or ALT, then the bases after it)")
            out.counts["scored_not_snv"] += 1
            continue
        if kind != "snv":
            out.refs.append(None)
            out.alts.append(None)
            out.notes.append(f"{kind}: not scored (the model was trained and is scored on SNVs)")
            out.counts["skipped_not_snv"] += 1
            continue
        window = genome.window(chrom, pos - 1, 2 * VARIANT_FLANK + 1).sequence
        r, a = variant_pairs([window], [ref], [alt], recipe.data.window)
        out.refs.append(r[0])
        out.alts.append(a[0])
        out.notes.append("")
    out.counts["scored"] = sum(r is not None for r in out.refs)
    return out


# -- predict -------------------------------------------------------------------------------------

def predict(run_dir, inputs: GenomicsInputs) -> list[dict]:
    """One row per input record: class probabilities (promoter), -LLR or P(deleterious) (variants), or
    bits per base (sequences under an LM run); ``note`` says why a record was not scored."""
    run_dir, recipe, results = open_run(run_dir)
    cfg = recipe.data
    if cfg.path and inputs.kind == "sequences" and cfg.task == "promoter":  # a run on the user's sequences
        from . import genomics_user_verbs
        return genomics_user_verbs.predict(run_dir, recipe, results, inputs)
    rows = [dict(r) for r in inputs.rows]
    domain_run.report_skipped(f"predict {inputs.kind}", dict(inputs.counts))
    if inputs.kind == "variants":
        ok = [i for i, r in enumerate(inputs.refs) if r is not None]
        lm = load_lm(run_dir, recipe, results) if ok and cfg.task in LM_TASKS else None
        if lm is not None and lm.config.bidirectional:  # a masked LM's marginal is defined for SNVs only
            kept = [i for i in ok if variant_kind(rows[i]["ref"], rows[i]["alt"]) == "snv"]
            for i in set(ok) - set(kept):
                inputs.notes[i] = (f"{variant_kind(rows[i]['ref'], rows[i]['alt'])}: not scored (a masked LM "
                                   "scores SNVs only)")
            if len(kept) < len(ok):
                print(f"predict variants: {len(ok) - len(kept)} non-SNV variants not scored: the run's LM is "
                      "bidirectional (masked), whose score is defined for SNVs only", file=sys.stderr)
            ok = kept
        columns = variant_scores(run_dir, recipe, results, [inputs.refs[i] for i in ok],
                                 [inputs.alts[i] for i in ok], lm=lm) if ok else {}
    else:
        ok = [i for i, s in enumerate(inputs.sequences) if s is not None]
        seqs = [inputs.sequences[i] for i in ok]
        if cfg.task == "promoter":  # one model, or the mean of an ensemble's members
            probs = mean_probs(run_dir, recipe, results, seqs)
            names = class_names(recipe)
            columns = {f"p_{c}": probs[:, j] for j, c in enumerate(names)}
            columns["predicted"] = np.asarray([names[j] for j in probs.argmax(1)], dtype=object)
        elif cfg.task in LM_TASKS:
            model = load_lm(run_dir, recipe, results).to(device_of(recipe))
            columns = {"bits_per_base": bits_per_base(model, seqs)} if ok else {}
        else:
            raise ValueError("a vep run scores variants: give a VCF and --genome")
    for row, note in zip(rows, inputs.notes):
        row.update({k: "" for k in columns})
        row["note"] = note
    for j, i in enumerate(ok):
        for k, values in columns.items():
            v = values[j]
            rows[i][k] = v if isinstance(v, str) else round(float(v), 6)
    return rows


# -- export --------------------------------------------------------------------------------------

def export(run_dir, out) -> Path:
    """The run's trained model, LoRA merged: ``hf/`` (the backbone, Hugging Face Mamba format), ``head/``
    (a task head in our format), ``model/`` (a whole MambaForTask in our format) and ``export.json``.
    An ensemble exports each member that way to ``out/member-<k>/``, and ``out/export.json`` says it is an
    ensemble of K whose prediction is the mean of the members' class probabilities."""
    run_dir, recipe, results = open_run(run_dir)
    cfg = recipe.data
    if cfg.path and cfg.task == "promoter":  # a classifier / regressor of the user's sequences
        from . import genomics_user_verbs
        return genomics_user_verbs.export(run_dir, recipe, results, out)
    meta = {"run_dir": str(run_dir), "recipe": recipe.name, "task": cfg.task, "tokenizer": f"DNATokenizer(k={cfg.k})",
            "window": cfg.window, "rc_average": cfg.rc_average}
    if cfg.task == "promoter":
        load, meta["labels"] = load_classifier, class_names(recipe)
    elif cfg.task == "vep" and cfg.vep_method == "finetune":
        load = load_pair_classifier
        meta["head"] = {"kind": "variant_pair", "num_labels": 2, "radius": cfg.vep_radius,
                        "labels": ["neutral", "deleterious"]}
    else:
        load = load_lm
    members = member_dirs(run_dir, recipe)
    if members:
        export_ensemble(run_dir, recipe, results, load, Path(out), meta)
        return Path(out)
    model = load(run_dir, recipe, results)
    manifest = domain_run.export_model(model, out, meta)
    if (Path(out) / "model").is_dir():
        DNATokenizer(cfg.k).save(Path(out) / "model")
    if cfg.task == "vep" and cfg.vep_method == "embedding":
        clf = load_embedding_classifier(run_dir, recipe, model)
        atomic_write_json(Path(out) / "embedding_classifier.json", clf.to_dict())
        manifest["written"].append("embedding_classifier.json")
        atomic_write_json(Path(out) / "export.json", manifest)
    return Path(out)


def export_ensemble(run_dir: Path, recipe, results: dict, load, out: Path, meta: dict) -> None:
    """Each member exported to ``out/member-<k>/`` (one loaded at a time), then ``out/export.json``."""
    folders = []
    members = classifiers(run_dir, recipe, results)
    for k, (folder, member_recipe, member_results) in enumerate(members):
        domain_run.export_model(load(folder, member_recipe, member_results), out / folder.name, meta | {
            "ensemble_member": k, "seed": member_recipe.model.seed,
            "note": f"member {k} of an ensemble of {len(members)}: see ../export.json for how they combine"})
        if (out / folder.name / "model").is_dir():
            DNATokenizer(recipe.data.k).save(out / folder.name / "model")
        folders.append(folder.name)
    strands = " (each member's: the mean of its forward and reverse-complement logits, then softmax)" \
        if recipe.data.rc_average else ""
    atomic_write_json(out / "export.json", meta | {
        "exported_from": str(run_dir), "ensemble": len(folders), "members": folders,
        "combine": f"mean of the members' softmax class probabilities{strands}", "written": folders})
