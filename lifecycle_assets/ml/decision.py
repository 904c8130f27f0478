"""The prediction a client receives from a score.

Apart from `training.py` so the service can answer without importing scikit-learn (about a
second of start-up) where it serves a compiled model.
"""

from __future__ import annotations

import numpy as np

from lifecycle_assets.spec import ModelSpec


def decide(scores: np.ndarray, spec: ModelSpec, threshold: float = 0.5) -> np.ndarray:
    """The prediction a client receives: the class at `threshold`, or the value itself."""
    return (scores >= threshold).astype(int) if spec.is_classifier else scores
