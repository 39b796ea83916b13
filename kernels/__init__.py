"""mambatune.kernels: the Mamba ops, activations in, activations out (no module weights)."""
from .causal_conv1d import causal_conv1d, causal_conv1d_update
from .selective_scan import selective_scan, selective_state_update
from .ssd import ssd_scan, ssd_state_update

__all__ = ["selective_scan", "selective_state_update", "causal_conv1d", "causal_conv1d_update", "ssd_scan",
           "ssd_state_update"]
