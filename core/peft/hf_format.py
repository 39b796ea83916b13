"""LoRA adapters in Hugging Face PEFT's file format, so ``PeftModel.from_pretrained`` loads them.

PEFT's LoRA computes ``W x + (lora_alpha / r) * B(A(dropout(x)))`` on the modules it targets
and saves ``adapter_config.json`` (``peft_type: LORA``) with ``adapter_model.safetensors``
holding ``base_model.model.<module>.lora_A.weight`` (r, in) and ``...lora_B.weight`` (out, r).
Our :class:`~.lora.LoRALinear` is the same update, so a LoRA of ours on the backbone's
projections becomes such a folder for transformers' ``MambaForCausalLM`` (whose module names are
ours), on the projections transformers' Mamba calls as modules: ``in_proj`` and ``x_proj`` (PEFT
refuses ``out_proj``, which the fused CUDA path reads directly, and transformers computes
``dt_proj.weight @ x`` itself, so a LoRA there would be skipped without a word). A partial LoRA (LoRAp: an
update on a slice of the output rows) is written with B's other rows zero, which is the same
update. What PEFT's LoRA cannot hold (DoRA on a slice, other methods, a LoRA on a task head)
is reported instead, and only our own format is written.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .lora import LoRALinear

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
HF_LORA_METHODS = {"lora", "head_only"}
# Targets a LoRA in PEFT's format would not reach in transformers' Mamba: PEFT refuses out_proj and conv1d
# (the fused CUDA path reads their weights directly), and transformers' mixer computes
# ``dt_proj.weight @ x`` without calling the module, so a PEFT LoRA on dt_proj is silently skipped
# (measured: logits off by the whole update). Our kernels take activations only, so our adapters may use them.
PEFT_REFUSED_ON_MAMBA = ("out_proj", "conv1d", "dt_proj")


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def hf_lora(model: nn.Module, base_model: str | None = None) -> tuple[dict, dict[str, torch.Tensor]] | str:
    """(PEFT's adapter_config.json as a dict, its tensors) for ``model``'s LoRA, or the reason it has none."""
    state = getattr(model, "peft_state", None)
    if state is None:
        return "the model has no adapters"
    others = sorted({m.method for m in state.config.methods} - HF_LORA_METHODS)
    if others:
        return f"PEFT's LoRA format holds LoRA only; this adapter also uses {', '.join(others)}"
    layers = lora_modules(model)
    if not layers:
        return "the adapter has no LoRA layers"
    outside = [n for n in layers if not n.startswith("backbone.")]
    if outside:
        return f"a LoRA on the task head ({', '.join(outside)}) has no place in a Hugging Face MambaForCausalLM"
    refused = sorted({n.rsplit(".", 1)[-1] for n in layers} & set(PEFT_REFUSED_ON_MAMBA))
    if refused:
        return (f"a LoRA on {', '.join(refused)} does not reach transformers' Mamba (PEFT refuses out_proj and conv1d; "
                "transformers reads dt_proj.weight without calling the module); an adapter on in_proj and x_proj "
                "only is written in PEFT's format too")
    if any(m.lora_magnitude is not None for m in layers.values()):
        return "DoRA adapters are written in our format only"
    dropouts = {float(getattr(m.dropout, "p", 0.0)) for m in layers.values()}
    ranks = {n: m.rank for n, m in layers.items()}
    alphas = {n: m.scale * m.rank for n, m in layers.items()}
    def most_common(values: dict) -> float:  # the config's r / lora_alpha; the others go to the *_pattern maps
        counts = list(values.values())
        return max(set(counts), key=counts.count)

    rank, alpha = most_common(ranks), most_common(alphas)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "target_modules": sorted(layers), "r": rank, "lora_alpha": alpha, "lora_dropout": max(dropouts),
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "use_rslora": False, "use_dora": False,
        "rank_pattern": {n: r for n, r in ranks.items() if r != rank},
        "alpha_pattern": {n: a for n, a in alphas.items() if a != alpha},
        "modules_to_save": None,
    }
    tensors = {}
    for name, m in layers.items():
        start, end = m.rows
        b = torch.zeros(m.out_features, m.rank, dtype=m.lora_B.dtype)
        b[start:end] = m.lora_B.detach().cpu()
        tensors[f"base_model.model.{name}.lora_A.weight"] = m.lora_A.detach().cpu().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = b.contiguous()
    return config, tensors
