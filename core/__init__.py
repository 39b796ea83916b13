"""mambatune.core: the Mamba-1 model every domain shares."""
from .config import ConfigError, MambaConfig
from .heads import (
    LMHead,
    MambaForTask,
    MultiLabelHead,
    RegressionHead,
    SequenceClassificationHead,
    TaskOutput,
    TokenClassificationHead,
    build_head,
    head_from_spec,
    register_head,
    pool,
)
from .mixer import BiMambaMixer, LayerState, MambaMixer
from .model import MambaBlock, MambaCache, MambaModel, RMSNorm

__all__ = [
    "ConfigError", "MambaConfig", "MambaModel", "MambaBlock", "MambaMixer", "BiMambaMixer", "LayerState",
    "MambaCache", "RMSNorm", "MambaForTask", "TaskOutput", "LMHead", "SequenceClassificationHead",
    "MultiLabelHead", "RegressionHead", "TokenClassificationHead", "build_head", "head_from_spec", "register_head", "pool",
]
