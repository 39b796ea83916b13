"""The optional ``lightning`` dependency of GluonTS' torch estimators (DeepAR, PatchTST).

Imported lazily so the data layer, evaluation, seasonal naive and Theta work without it.
"""
from __future__ import annotations

import importlib.util

INSTALL_HINT = ("GluonTS' torch estimators (DeepAR, PatchTST) need `lightning`: "
                "pip install 'mambatune[timeseries]' (or pip install lightning)")


def lightning_available() -> bool:
    return importlib.util.find_spec("lightning") is not None


def require_lightning() -> None:
    """Raise ImportError with the install command when ``lightning`` is missing."""
    if not lightning_available():
        raise ImportError(INSTALL_HINT)
