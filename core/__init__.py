"""mambatune.core: the Mamba model (Mamba-1, or Mamba-2 with ``arch="mamba2"``) every domain shares."""
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
from .mixer2 import BiMamba2Mixer, GatedRMSNorm, Mamba2Mixer
from .model import MambaBlock, MambaCache, MambaModel, RMSNorm

__all__ = [
    "ConfigError", "MambaConfig", "MambaModel", "MambaBlock", "MambaMixer", "BiMambaMixer", "LayerState",
    "Mamba2Mixer", "BiMamba2Mixer", "GatedRMSNorm", "MambaCache", "RMSNorm", "MambaForTask", "TaskOutput", "LMHead", "SequenceClassificationHead",
    "MultiLabelHead", "RegressionHead", "TokenClassificationHead", "build_head", "head_from_spec", "register_head", "pool",
]
