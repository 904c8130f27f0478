"""`lifecycle labels FILE`: land a file of delayed labels where the `ground_truth` asset reads
them, from a local path or the team's object storage (`s3://...`), checked first."""

from __future__ import annotations

import click

from lifecycle_assets.cli.app import _load, _settings, _spec_option, console, main


@main.command("labels")
@click.argument("source", metavar="FILE|URL")
@_spec_option
def labels_command(source: str, spec_path: str | None) -> None:
    """Check a label file (prediction_id, label, labelled_at; CSV or Parquet, a local path or
    an s3:// URL) and land it in the model's label folder. A missing file, a bad row or a name
    already taken by a different file ends the command in one line; nothing is written then."""
    from lifecycle_assets.data.ground_truth import LabelFileError, labels_folder
    from lifecycle_assets.data.label_landing import land_label_file

    spec = _load(spec_path)
    folder = labels_folder(_settings().landing_dir, spec.name)
    try:
        landed = land_label_file(source, folder, spec)
    except LabelFileError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:  # storage unreachable, no access: said, not a traceback
        raise click.ClickException(f"{source}: {error}".splitlines()[0]) from None
    console.print(f"{spec.name}: {landed.summary()}", markup=False, highlight=False)
