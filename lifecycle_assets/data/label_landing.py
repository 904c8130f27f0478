"""Land a label file in a model's label folder, checked first: `lifecycle labels FILE`.

Whoever learns the outcomes may hold them anywhere: a local file, or an object on the team's
storage (`s3://...`). Both are read through `storage`, the one door to stored files, checked
all or nothing (`label_files`: a bad row refuses the file, naming it), and only then copied
into `<landing>/<model>/labels/`, where the `ground_truth` asset reads them. Nothing is lost on
the way: the source is never changed, and a different file already landed under the same name
is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from upath import UPath

from lifecycle_assets import storage
from lifecycle_assets.data.ground_truth import SUFFIXES, LabelFileError, labels_or_raise
from lifecycle_assets.data.label_files import LABELLED_AT, Target, check_label_data
from lifecycle_assets.data.lake import sha256_bytes


@dataclass(frozen=True)
class LandedLabels:
    """A label file landed (or found already landed) and what it holds."""

    target: UPath
    labels: pl.DataFrame
    already: bool

    def summary(self) -> str:
        stamps = self.labels[LABELLED_AT]
        span = f"labelled {stamps.min():%Y-%m-%d} .. {stamps.max():%Y-%m-%d}"
        verb = "already landed as" if self.already else "landed in"
        return f"{self.labels.height} label(s), {span}, {verb} {self.target}"


def land_label_file(
    source: storage.Location, folder: storage.Location, task: Target
) -> LandedLabels:
    """Check `source` (a local path or URL) and copy its exact bytes into `folder`; raises
    LabelFileError in one line when it is missing, unreadable, holds a bad row, or would
    replace a different file of the same name."""
    location = storage.path(source)
    if location.suffix.lower() not in SUFFIXES:
        raise LabelFileError(
            f"{source}: a label file is .csv or .parquet (the ground_truth asset reads no other)"
        )
    try:
        data = location.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise LabelFileError(f"{source}: no such file or object") from None
    labels = labels_or_raise(check_label_data(location, data, task))
    target = storage.path(folder) / location.name
    if storage.exists(target):
        if sha256_bytes(storage.read_bytes(target)) == sha256_bytes(data):
            return LandedLabels(target, labels, already=True)
        raise LabelFileError(
            f"{target} already holds a different label file: land {source} under another "
            "name (nothing was overwritten)"
        )
    storage.write_atomic(target, data)
    return LandedLabels(target, labels, already=False)
