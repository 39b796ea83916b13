"""Loading and saving Mamba checkpoints.

Reads three layouts from a local folder (or a hub id, through huggingface_hub
when online):

- our own: ``config.json`` (``"format": "mambatune"``) + ``model.safetensors``;
- Hugging Face ``MambaForCausalLM`` / ``MambaModel``: ``config.json`` with
  ``model_type: mamba`` + ``model.safetensors`` (single or sharded) or
  ``pytorch_model.bin``;
- original mamba_ssm: ``config.json`` with ``d_model``/``n_layer``/``ssm_cfg`` +
  ``pytorch_model.bin``;
- Caduceus (bidirectional DNA Mamba, HF format, ``model_type: caduceus``) without RCPS layers.

Writes our format and exports the Hugging Face format. Never unpickles code:
``.bin`` files are read with ``torch.load(weights_only=True)``. Files are
written atomically (temporary file + rename), so a crash never leaves a
half-written checkpoint under the final name.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_write, atomic_write_json, host_tensors
from .checkpoints_mamba2 import Mamba2CheckpointError, config_from_hf_mamba2, config_from_mamba_ssm2, hf_mamba2_parts
from .config import MambaConfig
from .heads import Head, LMHead, MambaForTask, head_from_spec

log = logging.getLogger(__name__)

FORMAT = "mambatune"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read into the requested model."""


@dataclass
class LoadReport:
    """What loading did: the source layout, and the parameters that were newly initialised."""

    source_format: str
    path: str
    newly_initialized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"loaded {self.source_format} checkpoint from {self.path}"
        if self.newly_initialized:
            s += f"; newly initialised (train these): {', '.join(self.newly_initialized)}"
        if self.ignored:
            s += f"; ignored from the checkpoint: {', '.join(self.ignored)}"
        return s


# -- files ---------------------------------------------------------------------------------

def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> None:
    out = host_tensors(tensors)
    atomic_write(path, lambda tmp: save_file(out, tmp, metadata=metadata))


def shard_files(folder: Path, index: Path) -> list[Path]:
    """The shard files an index names, each a file inside ``folder`` (an entry reaching outside it, through
    ``..``, an absolute path or a link, is refused: an index must not make us read other files)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{index} is not a valid index (a JSON object with a weight_map): {err}") from None
    root = folder.resolve()
    out = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{index} names a shard {name!r}; expected a file name")
        path = (folder / name).resolve()
        if os.path.isabs(name) or root not in path.parents:
            raise CheckpointError(f"{index} names the shard {name!r}, which lies outside the model folder {folder}; "
                                  "shards must be files inside the folder")
        out.append(folder / name)
    return out


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: safetensors (single or sharded) first, else .bin files."""
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").exists():
        return load_file(folder / "model.safetensors")
    if index.exists():
        out: dict[str, torch.Tensor] = {}
        for shard in shard_files(folder, index):
            if not shard.is_file():
                raise CheckpointError(f"{index} names {shard.name}, which is not in {folder}")
            out.update(load_file(shard))
        return out
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        out = {}
        for b in bins:
            try:
                out.update(torch.load(b, map_location="cpu", weights_only=True))
            except Exception as err:  # weights_only refuses pickled code
                raise CheckpointError(
                    f"{b} could not be read as plain tensors ({err}); mambatune never unpickles code. "
                    "Convert it to safetensors with the tool that wrote it."
                ) from err
        return out
    raise CheckpointError(
        f"no weights in {folder}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )


def looks_local(path: str) -> bool:
    """Whether a missing ``path`` was meant as a local folder, not a hub id: it starts with ``./`` ``../``
    ``/`` or ``~``, or its first part is a folder that exists here (``models/my-model`` beside ``models/``)."""
    if path.startswith(("./", "../", "/", "~", ".\\", "..\\")) or path in (".", ".."):
        return True
    first = path.replace("\\", "/").split("/", 1)[0]
    return "/" in path and Path(first).is_dir()


def nonfinite_tensors(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """``{name: count}`` of the floating tensors holding NaN or Inf values."""
    out = {}
    for name, t in sd.items():
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                out[name] = bad
    return out


def check_finite(sd: dict[str, torch.Tensor], where: str,
                 advice: str = "use an earlier checkpoint (or pass allow_nonfinite=True to load it anyway)") -> None:
    """Raises :class:`CheckpointError` naming every tensor of ``sd`` that holds NaN or Inf."""
    bad = nonfinite_tensors(sd)
    if bad:
        listed = ", ".join(f"{k} ({n} of {sd[k].numel()})" for k, n in list(bad.items())[:20])
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise CheckpointError(
            f"{where} holds non-finite (NaN/Inf) weights in {len(bad)} tensor(s): {listed}{more}. A model with "
            f"them gives NaN outputs; {advice}")


def resolve_path(path_or_id: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a hub id downloaded with huggingface_hub (needs network).
    A missing path that looks local (see :func:`looks_local`) is "no such folder", never a download."""
    p = Path(path_or_id).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"{p} is a file; pass the checkpoint folder (with config.json) instead")
        return p
    s = str(path_or_id)
    if looks_local(s):
        parent = next((q for q in p.absolute().parents if q.is_dir()), None)
        raise CheckpointError(f"checkpoint {s!r} not found: no such folder ({p.absolute()}; "
                              f"the nearest existing folder is {parent})")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", s):
        raise CheckpointError(f"checkpoint {s!r} not found: no such folder, and it is not a hub id like 'state-spaces/mamba-130m-hf'")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError("loading from the hub needs huggingface_hub: pip install huggingface_hub") from err
    try:
        return Path(snapshot_download(s, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]))
    except Exception as err:
        raise CheckpointError(
            f"could not download {s!r} from the Hugging Face hub ({type(err).__name__}: {err}). "
            "If this machine is offline, download the folder elsewhere and pass its local path."
        ) from err


# -- config conversion ---------------------------------------------------------------------

def detect_format(cfg: dict) -> str:
    if cfg.get("format") == FORMAT:
        return "mambatune"
    if cfg.get("model_type") == "mamba2":
        return "hf_mamba2"
    if cfg.get("model_type") == "mamba" or any("Mamba" in a for a in cfg.get("architectures") or []):
        if cfg.get("model_type") not in (None, "mamba"):
            raise CheckpointError(f"model_type {cfg.get('model_type')!r} is not Mamba-1")
        return "hf"
    if cfg.get("model_type") == "caduceus":
        return "caduceus"
    if "d_model" in cfg and "n_layer" in cfg:
        return "mamba_ssm"
    raise CheckpointError(
        "config.json is neither mambatune's, Hugging Face Mamba's (model_type 'mamba') nor mamba_ssm's (d_model, n_layer, ssm_cfg)"
    )


def config_from_hf(c: dict) -> MambaConfig:
    if c.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"hidden_act {c['hidden_act']!r} is not supported (Mamba uses silu)")
    rank = c.get("time_step_rank", "auto")
    return MambaConfig(
        d_model=c["hidden_size"], n_layer=c["num_hidden_layers"], vocab_size=c["vocab_size"],
        d_state=c.get("state_size", 16), d_conv=c.get("conv_kernel", 4), expand=c.get("expand", 2),
        dt_rank=rank, pad_vocab_size_multiple=1, rms_norm=True,
        norm_epsilon=c.get("layer_norm_epsilon", 1e-5), residual_in_fp32=c.get("residual_in_fp32", True),
        conv_bias=c.get("use_conv_bias", True), bias=c.get("use_bias", False),
        dt_min=c.get("time_step_min", 0.001), dt_max=c.get("time_step_max", 0.1),
        dt_init=c.get("time_step_init_scheme", "random"), dt_scale=c.get("time_step_scale", 1.0),
        dt_init_floor=c.get("time_step_floor", 1e-4), initializer_range=c.get("initializer_range", 0.1),
        rescale_prenorm_residual=c.get("rescale_prenorm_residual", False),
        tie_embeddings=c.get("tie_word_embeddings", True), pad_token_id=c.get("pad_token_id"),
    )


def config_from_mamba_ssm(c: dict) -> MambaConfig:
    ssm = dict(c.get("ssm_cfg") or {})
    layer = ssm.pop("layer", "Mamba1")
    if layer == "Mamba2":
        try:
            return config_from_mamba_ssm2(c)
        except Mamba2CheckpointError as err:
            raise CheckpointError(str(err)) from None
    if layer != "Mamba1":
        raise CheckpointError(f"ssm_cfg.layer is {layer!r}; mambatune reads Mamba-1 models")
    if c.get("d_intermediate", 0) or c.get("attn_layer_idx"):
        raise CheckpointError("this mamba_ssm checkpoint has MLP or attention layers; only pure Mamba-1 stacks are supported")
    known = {"d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor",
             "conv_bias", "bias"}
    unknown = set(ssm) - known - {"use_fast_path"}
    if unknown:
        raise CheckpointError(f"ssm_cfg has options mambatune does not implement: {sorted(unknown)}")
    ssm.pop("use_fast_path", None)
    return MambaConfig(
        d_model=c["d_model"], n_layer=c["n_layer"], vocab_size=c["vocab_size"],
        pad_vocab_size_multiple=c.get("pad_vocab_size_multiple", 8), rms_norm=c.get("rms_norm", True),
        residual_in_fp32=c.get("residual_in_fp32", True), tie_embeddings=c.get("tie_embeddings", True),
        norm_epsilon=c.get("norm_epsilon", 1e-5), **ssm,
    )


def config_from_caduceus(c: dict) -> MambaConfig:
    """Caduceus (bidirectional Mamba for DNA, HF format). RC-equivariant 'rcps' checkpoints are refused."""
    if c.get("rcps"):
        raise CheckpointError(
            "this Caduceus checkpoint uses RCPS layers, whose weight layout mambatune does not read yet; "
            "Caduceus checkpoints with rcps=false load, and rc_equivariant='posthoc' gives strand-invariant predictions"
        )
    ssm = dict(c.get("ssm_cfg") or {})
    ssm.pop("use_fast_path", None)
    ssm.pop("layer", None)
    strategy = {"add": "add", "ew_multiply": "mul", None: "add"}.get(c.get("bidirectional_strategy", "add"))
    if strategy is None:
        raise CheckpointError(f"Caduceus bidirectional_strategy {c['bidirectional_strategy']!r} is not supported")
    vocab = c["vocab_size"]
    cmap = c.get("complement_map")
    complement = [int(cmap[str(i)]) if str(i) in cmap else int(cmap.get(i, i)) for i in range(vocab)] if cmap else None
    return MambaConfig(
        d_model=c["d_model"], n_layer=c["n_layer"], vocab_size=vocab,
        pad_vocab_size_multiple=c.get("pad_vocab_size_multiple", 8), rms_norm=c.get("rms_norm", True),
        residual_in_fp32=c.get("residual_in_fp32", False), norm_epsilon=c.get("norm_epsilon", 1e-5),
        tie_embeddings=c.get("tie_word_embeddings", True), bidirectional=c.get("bidirectional", True),
        bidirectional_strategy=strategy, tie_bidirectional=c.get("bidirectional_weight_tie", True),
        complement_map=complement, rc_equivariant="none", pad_token_id=c.get("pad_token_id"), **ssm,
    )


def config_to_hf(cfg: MambaConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The ``config.json`` of a Hugging Face ``MambaForCausalLM`` holding ``cfg``'s weights (stored as ``dtype``).

    Only fields that describe the trained weights are carried over. ``rescale_prenorm_residual`` is an
    initialisation rule, and transformers (5.x) applies it at ``from_pretrained`` too, dividing every loaded
    ``out_proj.weight`` by sqrt(n_layer): the export always writes false, so the weights load unchanged.
    ``dtype`` makes transformers load the weights in the dtype they were saved in."""
    if cfg.bidirectional or cfg.rc_equivariant != "none" or not cfg.rms_norm:
        raise CheckpointError("Hugging Face MambaForCausalLM holds causal RMSNorm models only; this model is "
                              + ("bidirectional" if cfg.bidirectional else "RC-equivariant" if cfg.rc_equivariant != "none" else "LayerNorm"))
    return {
        "architectures": ["MambaForCausalLM"], "model_type": "mamba",
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layer, "vocab_size": cfg.padded_vocab_size,
        "state_size": cfg.d_state, "conv_kernel": cfg.d_conv, "expand": cfg.expand,
        "intermediate_size": cfg.d_inner, "time_step_rank": cfg.dt_rank, "layer_norm_epsilon": cfg.norm_epsilon,
        "residual_in_fp32": cfg.residual_in_fp32, "use_bias": cfg.bias, "use_conv_bias": cfg.conv_bias,
        "hidden_act": "silu", "time_step_min": cfg.dt_min, "time_step_max": cfg.dt_max,
        "time_step_init_scheme": cfg.dt_init, "time_step_scale": cfg.dt_scale, "time_step_floor": cfg.dt_init_floor,
        "initializer_range": cfg.initializer_range, "rescale_prenorm_residual": False,
        "tie_word_embeddings": cfg.tie_embeddings, "pad_token_id": cfg.pad_token_id, "use_cache": True,
        "dtype": str(dtype).removeprefix("torch."),
    }


# -- state dict conversion -----------------------------------------------------------------

def to_ours(sd: dict[str, torch.Tensor], fmt: str, config: MambaConfig | None = None) -> dict[str, torch.Tensor]:
    """Renames a HF / mamba_ssm / Caduceus state dict to our module names (backbone.* and head.weight)."""
    out = {}
    for k, v in sd.items():
        k2 = k
        if fmt == "caduceus":
            k2 = k2.removeprefix("caduceus.")
            k2 = k2.replace("backbone.embeddings.word_embeddings.", "backbone.embedding.")
            bi = config is not None and config.bidirectional
            k2 = k2.replace(".mixer.mamba_fwd.", ".mixer.fwd." if bi else ".mixer.")
            k2 = k2.replace(".mixer.mamba_rev.", ".mixer.rev.")
            if bi and config.tie_bidirectional and re.search(r"\.mixer\.rev\.(in_proj|out_proj)\.", k2):
                continue  # the same tensors as the forward direction's
        elif fmt in ("hf", "hf_mamba2"):
            if not k2.startswith(("backbone.", "lm_head.")):
                k2 = "backbone." + k2  # a bare MambaModel
            k2 = k2.replace("backbone.embeddings.", "backbone.embedding.")
        k2 = k2.replace("lm_head.weight", "head.weight")
        out[k2] = v
    return out


def to_hf(sd: dict[str, torch.Tensor], tie: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            if k != "head.weight":
                raise CheckpointError(f"Hugging Face export holds an LM head only; found {k}")
            out["lm_head.weight"] = v
            continue
        out[k.replace("backbone.embedding.", "backbone.embeddings.")] = v
    if tie:
        out.pop("lm_head.weight", None)
    elif "lm_head.weight" in out:
        # our untied head has vocab_size rows, HF's the embedding's padded count: the extra ids get zero logits
        head, rows = out["lm_head.weight"], out["backbone.embeddings.weight"].shape[0]
        if head.shape[0] < rows:
            out["lm_head.weight"] = torch.cat([head, head.new_zeros(rows - head.shape[0], head.shape[1])])
    return out


# -- public API ----------------------------------------------------------------------------

def save_pretrained(model: MambaForTask, path: str | os.PathLike, meta: dict | None = None,
                    allow_nonfinite: bool = False) -> Path:
    """Writes ``config.json`` + ``model.safetensors`` (our format) into ``path``; NaN / Inf weights are
    refused (nothing is written) unless ``allow_nonfinite``."""
    path = Path(path)
    sd = {k: v for k, v in model.state_dict().items()}
    if not allow_nonfinite:
        check_finite(sd, "the model to save", "nothing was written (allow_nonfinite=True writes it anyway)")
    path.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(sd, path / "model.safetensors", metadata={"format": FORMAT})
    cfg = {"format": FORMAT, "version": FORMAT_VERSION, "model": model.config.to_dict(),
           "head": dict(model.head.spec), "meta": meta or {}}
    atomic_write_json(path / "config.json", cfg)
    return path


def export_hf(model: MambaForTask, path: str | os.PathLike) -> Path:
    """Writes a folder that ``transformers.MambaForCausalLM.from_pretrained`` reads (LM models only).

    Adapters must be merged first (``mambatune.core.peft.merge``)."""
    if not isinstance(model.head, LMHead):
        raise CheckpointError("Hugging Face export needs a language model (LM head); this model has a "
                              f"{model.head.kind} head. Save it with save_pretrained instead.")
    if model.config.arch == "mamba2":
        try:
            hf_cfg, sd = hf_mamba2_parts(model)
        except Mamba2CheckpointError as err:
            raise CheckpointError(str(err)) from None
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors(to_hf(sd, model.config.tie_embeddings), path / "model.safetensors",
                                metadata={"format": "pt"})
        atomic_write_json(path / "config.json", hf_cfg)
        return path
    sd = model.state_dict()
    hf_cfg = config_to_hf(model.config, sd["backbone.embedding.weight"].dtype)
    extra = [k for k in sd if not re.match(r"(backbone\.(embedding|norm_f|layers\.\d+\.(norm|mixer\.(in_proj|x_proj|dt_proj|out_proj|conv1d)))\.(weight|bias)"
                                          r"|backbone\.layers\.\d+\.mixer\.(A_log|D)|head\.weight)$", k)]
    if extra:
        raise CheckpointError(f"the model holds parameters Hugging Face Mamba has no place for (merge adapters first): {extra[:5]}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(to_hf(sd, model.config.tie_embeddings), path / "model.safetensors", metadata={"format": "pt"})
    atomic_write_json(path / "config.json", hf_cfg)
    return path


def load_config(path_or_id) -> tuple[MambaConfig, dict, str]:
    folder = resolve_path(path_or_id)
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{folder} has no config.json")
    raw = json.loads(cfg_file.read_text())
    fmt = detect_format(raw)
    if fmt == "mambatune":
        return MambaConfig.from_dict(raw["model"]), raw, fmt
    if fmt == "hf":
        return config_from_hf(raw), raw, fmt
    if fmt == "caduceus":
        return config_from_caduceus(raw), raw, fmt
    if fmt == "hf_mamba2":
        try:
            return config_from_hf_mamba2(raw), raw, fmt
        except Mamba2CheckpointError as err:
            raise CheckpointError(str(err)) from None
    return config_from_mamba_ssm(raw), raw, fmt


def load_pretrained(
    path_or_id: str | os.PathLike,
    head: Head | dict | None = None,
    backend: str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    config_overrides: dict | None = None,
    allow_nonfinite: bool = False,
) -> MambaForTask:
    """Loads a checkpoint into a ``MambaForTask``.

    head: None keeps the checkpoint's head (an LM head for HF / mamba_ssm
    checkpoints); a Head (or a spec dict like ``{"kind": "classification",
    "num_labels": 2}``) replaces it and is reported as newly initialised.
    ``model.load_report`` says what happened. Missing or unexpected backbone
    keys and shape mismatches raise, listing them; so do NaN / Inf weights, unless ``allow_nonfinite``.
    """
    user_head = head is not None
    folder = resolve_path(path_or_id)
    config, raw, fmt = load_config(folder)
    if backend is not None or config_overrides:
        d = config.to_dict()
        d.update(config_overrides or {})
        if backend is not None:
            d["backend"] = backend
        config = MambaConfig.from_dict(d)
    sd = read_state_dict(folder)
    if not allow_nonfinite:
        check_finite(sd, f"checkpoint {folder}")
    if fmt != "mambatune":
        sd = to_ours(sd, fmt, config)
    probe = MambaForTask(config)
    if isinstance(head, dict):
        head = head_from_spec(head, probe.backbone.feature_dim)
    elif head is None and fmt == "mambatune":
        head = head_from_spec(raw.get("head", {"kind": "lm"}), probe.backbone.feature_dim)
    model = MambaForTask(config, head=head, backbone=probe.backbone) if head is not None else probe
    report = LoadReport(fmt, str(folder))
    expected = model.state_dict()
    if isinstance(model.head, LMHead) and model.head.tied:
        if "head.weight" in sd:
            report.ignored.append("head.weight (tied to the embedding)")
            sd.pop("head.weight")
    if user_head:
        # a head the caller brought: the checkpoint's head (if any) does not apply to it
        for k in sorted(k for k in sd if k.startswith("head.")):
            sd.pop(k)
            report.ignored.append(k)
    missing = [k for k in expected if k not in sd and not (user_head and k.startswith("head."))]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sd if k in expected and sd[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        lines = []
        if missing:
            lines.append(f"missing from the checkpoint ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            lines.append(f"unexpected in the checkpoint ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if mismatched:
            lines.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:20])}")
        raise CheckpointError(f"checkpoint {folder} does not fit the model:\n  " + "\n  ".join(lines))
    model.load_state_dict(sd, strict=False)
    model.tie_weights()
    report.newly_initialized = sorted(k for k in expected if k not in sd and k.startswith("head."))
    if report.newly_initialized:
        log.warning("%s", report)
    model.load_report = report
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model
