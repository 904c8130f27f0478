"""`lifecycle draft-spec` guesses the sensitive attribute the way a reader would, and keeps it
out of the model as the README says ("used for slices and fairness, never as a model input")."""

from __future__ import annotations

from pathlib import Path

from lifecycle_assets.data.draft import draft_spec
from lifecycle_assets.spec import load_spec

HEADER = "customer_id,event_time,tenure_months,plan,gender,churned\n"


def _csv(tmp_path: Path, header: str = HEADER) -> Path:
    rows = [
        f"C{i},2025-01-{1 + i % 28:02d} 10:00,{i % 70},{('Basic', 'Plus', 'Pro')[i % 3]},"
        f"{('female', 'male')[i % 2]},{('No', 'Yes')[i % 5 == 0]}"
        for i in range(120)
    ]
    path = tmp_path / "churn.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def test_a_column_named_like_a_protected_attribute_is_the_guess_and_no_model_input(
    tmp_path: Path,
) -> None:
    """It guessed `plan` (the first categorical) and trained on `gender`."""
    draft = tmp_path / "churn.yaml"
    draft.write_text(draft_spec(_csv(tmp_path)))
    spec = load_spec(draft)
    assert spec.sensitive_attribute == "gender"
    assert "gender" not in spec.input_columns and "plan" in spec.input_columns


def test_without_such_a_name_the_first_categorical_is_the_guess_still_no_model_input(
    tmp_path: Path,
) -> None:
    draft = tmp_path / "churn.yaml"
    draft.write_text(draft_spec(_csv(tmp_path, HEADER.replace("gender", "segment"))))
    spec = load_spec(draft)
    assert spec.sensitive_attribute == "plan"
    assert "plan" not in spec.input_columns and "segment" in spec.input_columns


def test_a_distinct_column_named_like_an_id_is_drafted_as_id_column(tmp_path: Path) -> None:
    """README's churn spec has `id_column: customer_id`; the draft only commented it out, so
    answers carried `record_id: null`."""
    draft = tmp_path / "churn.yaml"
    draft.write_text(draft_spec(_csv(tmp_path)))
    assert load_spec(draft).id_column == "customer_id"
    draft.write_text(draft_spec(_csv(tmp_path, HEADER.replace("customer_id", "customer_ref"))))
    assert load_spec(draft).id_column is None
