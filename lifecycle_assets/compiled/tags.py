"""The compiled form's tags and file names, apart from the compiler.

Alias moves and the registry reader check these tags without compiling anything, so they
import this module, not `compiled.artifact` (pandas, polars, scikit-learn).
"""

TAG_COMPILED_SHA256 = "compiled_sha256"
TAG_COMPILED_STATUS = "compiled_status"
TAG_COMPILED_REASON = "compiled_reason"
# Artifact path of the compiled file, relative to the version's MLflow run.
TAG_COMPILED_PATH = "compiled_path"
COMPILED_DIR = "compiled"
COMPILED_FILE = "compiled_model.npz"
STATUS_OK, STATUS_FALLBACK = "ok", "fallback"
