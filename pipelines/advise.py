"""Which fine-tuning method fits: a decision on trainable parameters per training example, then memory.

The table weighs the model's size against the data's: with ``params / examples`` above 130,000
(e.g. a 130M-parameter model on < 1K examples) only a head on frozen features is safe from
overfitting; from 1,300 to 130,000 (a 130M model on 1K-100K examples) parameter-efficient
fine-tuning (LoRA); at or below 1,300 (a 130M model on > 100K examples, or the shipped
120k-parameter DNA model on a few hundred) full fine-tuning. Memory on a GPU: full fine-tuning
in mixed precision needs about 16 bytes per parameter (fp32 weights, gradients and two AdamW
moments) plus activations; PEFT about 2 bytes per frozen parameter (bf16 copy) or 4 (fp32). When
the choice does not fit, the advice steps down. On a CPU (no GPU memory given) time, not memory,
is the limit, and fp32 is the precision.
"""
from __future__ import annotations

from dataclasses import dataclass, field

GIB = 2**30
FULL_BYTES_PER_PARAM = 16
FROZEN_BYTES_PER_PARAM = 4
HEADROOM = 0.6  # share of the GPU the weights and optimizer may take; the rest is activations


@dataclass
class Advice:
    method: str            # head_only | lora | full
    recipe_hint: str       # the peft section to use
    precision: str
    gradient_checkpointing: bool
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"method: {self.method}", f"precision: {self.precision}",
                 f"gradient_checkpointing: {str(self.gradient_checkpointing).lower()}",
                 f"recipe: {self.recipe_hint}", "why:"]
        return "\n".join(lines + [f"  - {r}" for r in self.reasons])


HEAD_ONLY_ABOVE = 130_000   # parameters per training example above which only a head is trained
FULL_AT_MOST = 1_300        # ... at or below which full fine-tuning is advised


def advise(examples: int, gpu_memory_gib: float | None = None, params: float = 130e6) -> Advice:
    """examples: training examples; gpu_memory_gib: the GPU's memory (None or 0: a CPU); params: the model's
    parameter count (default: the 130m shape)."""
    if examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    if gpu_memory_gib is not None and gpu_memory_gib < 0:
        raise ValueError(f"gpu memory must be >= 0 GiB (0 or none: a CPU), got {gpu_memory_gib}")
    if params < 1:
        raise ValueError(f"params must be >= 1, got {params}")
    reasons = []
    ratio = params / examples
    size = f"{params:,.0f} parameters / {examples:,} examples = {ratio:,.0f} per example"
    if ratio > HEAD_ONLY_ABOVE:
        method = "head_only"
        reasons.append(f"{size} (> {HEAD_ONLY_ABOVE:,}): too few examples to move the backbone without "
                       "overfitting; train a head on frozen features")
    elif ratio > FULL_AT_MOST:
        method = "lora"
        reasons.append(f"{size} ({FULL_AT_MOST:,}-{HEAD_ONLY_ABOVE:,}): parameter-efficient fine-tuning (LoRA) "
                       "adapts the backbone with few trainable parameters")
    else:
        method = "full"
        reasons.append(f"{size} (<= {FULL_AT_MOST:,}): enough data for full fine-tuning")
    hint = {"head_only": "peft: {methods: [{method: head_only}]}",
            "lora": "peft: {methods: [{method: lora, targets: [in_proj, x_proj, out_proj], rank: 8}]}",
            "full": "peft: {methods: []}  (full fine-tuning)"}
    if not gpu_memory_gib:
        reasons.append("on a CPU: fp32; memory rarely limits a model this size, time does: every method runs the "
                       "whole forward and backward pass, so a smaller model (e.g. a shipped one, `mambatune models`) "
                       "or shorter inputs save the most time")
        return Advice(method, hint[method], "fp32", False, reasons)
    budget = gpu_memory_gib * GIB * HEADROOM
    full_need = params * FULL_BYTES_PER_PARAM
    frozen_need = params * FROZEN_BYTES_PER_PARAM
    if method == "full" and full_need > budget:
        method = "lora"
        reasons.append(f"full fine-tuning needs ~{full_need / GIB:.1f} GiB for weights, gradients and AdamW "
                       f"states, more than {HEADROOM:.0%} of {gpu_memory_gib:g} GiB: LoRA instead")
    precision = "bf16"
    checkpointing = False
    if method != "full" and frozen_need > budget:
        if frozen_need / 2 > budget:
            reasons.append(f"even the bf16 weights (~{params * 2 / GIB:.1f} GiB) do not fit in {gpu_memory_gib:g} GiB: "
                           "use a smaller model or a larger GPU (or FSDP over several)")
        else:
            reasons.append("fp32 weights do not fit: keep the frozen weights in bf16")
        checkpointing = True
    elif method == "full" or params * FROZEN_BYTES_PER_PARAM > budget / 4:
        checkpointing = True
        reasons.append("little memory left for activations: gradient checkpointing per block")
    return Advice(method, hint[method], precision, checkpointing, reasons)
