"""Which fine-tuning method fits: a decision table on dataset size, adjusted for GPU memory.

Examples: < 1K -> frozen backbone + head (head_only); 1K-100K -> PEFT (LoRA);
> 100K -> full fine-tuning. Memory: full fine-tuning in mixed precision needs
about 16 bytes per parameter (fp32 weights, gradients and two AdamW moments)
plus activations; PEFT needs about 2 bytes per frozen parameter (bf16 copy) or
4 (fp32). When the table's choice does not fit, the advice steps down.
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


def advise(examples: int, gpu_memory_gib: float, params: float = 130e6) -> Advice:
    """params: the model's parameter count (default: the 130m shape)."""
    if examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    if gpu_memory_gib <= 0:
        raise ValueError(f"gpu memory must be positive, got {gpu_memory_gib}")
    reasons = []
    if examples < 1_000:
        method = "head_only"
        reasons.append(f"{examples:,} examples (< 1K): too few to move the backbone without overfitting; "
                       "train a head on frozen features")
    elif examples <= 100_000:
        method = "lora"
        reasons.append(f"{examples:,} examples (1K-100K): parameter-efficient fine-tuning (LoRA) adapts the "
                       "backbone at a fraction of the memory")
    else:
        method = "full"
        reasons.append(f"{examples:,} examples (> 100K): enough data for full fine-tuning")
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
    hint = {"head_only": "peft: {methods: [{method: head_only}]}",
            "lora": "peft: {methods: [{method: lora, targets: [in_proj, x_proj, out_proj], rank: 8}]}",
            "full": "peft: {methods: []}  (full fine-tuning)"}[method]
    return Advice(method, hint, precision, checkpointing, reasons)
