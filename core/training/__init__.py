"""mambatune.core.training: the generic engine (loop, optimizer groups, schedule, precision, resume, DDP/FSDP)."""
from .distributed import DistEnv, ResumableSampler
from .finetune import finetune as finetune  # the one fine-tune path (PEFT, Trainer, FSDP gather)
from .figures import plot_curves
from .metrics_log import MetricsLog, read_metrics
from .monitor import SSMMonitor
from .nonfinite import NonFiniteLossError
from .optim import build_optimizer, build_scheduler, param_groups, warmup_cosine
from .precision import Precision, fp32_parameter_names
from .run_state import latest_checkpoint, list_checkpoints, load_checkpoint
from .trainer import Trainer, TrainConfig, TrainResult

__all__ = [
    "Trainer", "TrainConfig", "TrainResult", "NonFiniteLossError", "build_optimizer", "build_scheduler",
    "param_groups", "warmup_cosine", "Precision", "fp32_parameter_names", "DistEnv", "ResumableSampler",
    "MetricsLog", "plot_curves", "read_metrics", "SSMMonitor", "latest_checkpoint", "list_checkpoints",
    "load_checkpoint",
]
