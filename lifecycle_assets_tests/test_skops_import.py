"""skops imported without scanning scikit-learn: faster, and a load accepts the same types.

Each check runs in a fresh interpreter: in the test process skops may already have been
imported the stock way by another test (or by MLflow), and which import came first decides.
"""

from __future__ import annotations

import json
import subprocess
import sys

from lifecycle_assets.registry.artifacts import TRUSTED_MODULE_PREFIXES


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_skops_own_default_list_holds_only_types_the_allow_list_admits() -> None:
    """The list the fast import leaves empty: every name on it is admitted by our prefixes, so
    passing the file's types explicitly accepts exactly what the default would have."""
    names = json.loads(
        run_python(
            "import json; from skops.io import _trusted_types as t;"
            " print(json.dumps(t.SKLEARN_ESTIMATOR_TYPE_NAMES))"
        )
    )
    assert len(names) > 100  # skops' stock import does scan every estimator
    assert all(name.startswith(TRUSTED_MODULE_PREFIXES) for name in names)


def test_models_of_every_estimator_save_and_load_after_the_fast_import() -> None:
    result = json.loads(
        run_python(
            """
import json, sys, tempfile
from pathlib import Path
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder, StandardScaler
from lifecycle_assets.registry.artifacts import load_pipeline, save_pipeline, skops_io

sio = skops_io()
from skops.io import _trusted_types as t

rng = np.random.default_rng(0)
X = np.column_stack([rng.normal(size=300), rng.normal(size=300), rng.integers(0, 4, 300)])
y = (X[:, 0] + X[:, 2] > 1.5).astype(int)
encode = ColumnTransformer([("num", StandardScaler(), [0, 1]), ("cat", OrdinalEncoder(), [2])])
models = {
    "hgb": Pipeline([("x", encode), ("m", HistGradientBoostingClassifier(
        max_iter=10, categorical_features=[2]))]),
    "logistic": Pipeline([("x", encode), ("m", LogisticRegression())]),
    "forest": Pipeline([("x", encode), ("m", RandomForestRegressor(n_estimators=5))]),
    "ridge": Pipeline([("x", encode), ("m", Ridge())]),
}
same = {}
with tempfile.TemporaryDirectory() as tmp:
    for name, model in models.items():
        model.fit(X, y)
        path = Path(tmp) / f"{name}.skops"
        loaded = load_pipeline(path, save_pipeline(model, path))
        same[name] = bool((loaded.predict(X) == model.predict(X)).all())
print(json.dumps({
    "same": same,
    "default_list": t.SKLEARN_ESTIMATOR_TYPE_NAMES,
    "scanned": "sklearn.gaussian_process" in sys.modules,
}))
"""
        )
    )
    assert result["same"] == {"hgb": True, "logistic": True, "forest": True, "ridge": True}
    assert result["default_list"] == []
    assert result["scanned"] is False  # no module the models do not use was imported
