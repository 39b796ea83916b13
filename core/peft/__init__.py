"""mambatune.core.peft: parameter-efficient fine-tuning of Mamba models.

``apply(model, config)`` with one method config, a list (a hybrid) or a
``PeftConfig``; see docs/peft.md.
"""
from .additional_scan import AdditionalScanConfig, ExtraStates
from .affix import AffixConfig
from .base import MethodConfig
from .lora import LoRAConfig, LoRALinear
from .parallel_adapter import ParallelAdapter, ParallelAdapterConfig
from .partial import GROUPS, FullConfig, HeadOnlyConfig, PartialConfig, TopLayersConfig
from .prompt import LearnedTokens, PromptConfig
from .registry import (
    METHODS,
    PeftConfig,
    PeftState,
    apply,
    as_peft_config,
    get_adapter_params,
    load_adapter,
    merge,
    method_config,
    save_adapter,
    set_trainable_params,
    trainable_summary,
    unmerge,
)

__all__ = [
    "apply", "merge", "unmerge", "save_adapter", "load_adapter", "get_adapter_params", "set_trainable_params",
    "trainable_summary", "as_peft_config", "method_config", "METHODS", "GROUPS",
    "PeftConfig", "PeftState", "MethodConfig", "LoRAConfig", "PromptConfig", "AffixConfig", "AdditionalScanConfig",
    "ParallelAdapterConfig", "PartialConfig", "TopLayersConfig", "HeadOnlyConfig", "FullConfig",
    "LoRALinear", "LearnedTokens", "ExtraStates", "ParallelAdapter",
]
