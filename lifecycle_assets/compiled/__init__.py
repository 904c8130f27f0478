"""Compiled inference: the fitted scikit-learn pipeline as plain arrays and a numpy evaluator.

The skops pipeline stays the source of truth. At registration its encoding and estimator are
read into arrays (`compile.py`), saved as an npz file with no pickled objects (`model.py`),
and proven equal to the pipeline on the evaluation set and generated edge cases
(`parity.py`) before the version may be served by it; otherwise scikit-learn serves and the
reason is recorded (`artifact.py`). `rows.py` turns validated records into the evaluator's
inputs without building a data frame.
"""
