"""Fuzz the running service from its own OpenAPI description (schemathesis drives it).

Every operation gets schema-valid (positive) and schema-breaking (negative) cases against a real
`bentoml serve`; each answer must be what the description promises (a documented status, body
and content type; valid data accepted, invalid data refused with a 4xx), never a 5xx, and the
service must still answer a normal prediction afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_http_service import SERVICE, post, sample_records, serving

# Per operation and mode; about 11 operations x 2 modes. Enough to reach every documented error
# path, small enough to stay well under a minute and a half on a busy two-core machine.
EXAMPLES = 30
# A schema-breaking request must be refused: schemathesis's default list of refusals lacks 413,
# which the description documents for a body or a batch over its limit (`maxItems` broken by
# 1001 records is answered 413, as the description says).
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
            }
        }
    }
)


@dataclass
class Tally:
    cases: int = 0
    statuses: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def fuzz(operation: Any, mode: GenerationMode, url: str, tally: Tally) -> None:
    """Run one operation's cases in one mode; failures are collected, not raised, so one run
    reports every kind of failure (and Hypothesis spends no time shrinking)."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        tally.cases += 1
        response = case.call(base_url=url, timeout=10)
        tally.statuses.append(response.status_code)
        try:
            case.validate_response(response)
        except (Exception, BaseExceptionGroup) as error:  # schemathesis: a FailureGroup
            tally.failures.append(
                f"{case.method} {case.formatted_path} ({mode.value}) -> "
                f"{response.status_code}: {str(error)[:400]}"
            )

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation without parameters or body: nothing to break.
        assert mode == GenerationMode.NEGATIVE


@pytest.mark.e2e
def test_every_fuzzed_request_gets_a_documented_answer_and_no_5xx(
    registered_champion: ModelRef, spec: ModelSpec, tmp_path: Path
) -> None:
    with serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry") as url:
        document = httpx.get(f"{url}/openapi.json", timeout=10).json()
        assert set(document["paths"]) >= {"/predict", "/models/{name}/predict", "/metadata"}
        schema = schemathesis.openapi.from_dict(document, config=FUZZ_CONFIG)
        tally = Tally()
        for result in schema.get_all_operations():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(result.ok(), mode, url, tally)
        print(f"fuzz: {tally.cases} cases, statuses {sorted(set(tally.statuses))}")
        assert not [s for s in tally.statuses if s >= 500]
        assert not tally.failures, "\n".join(tally.failures[:10])
        assert tally.cases >= 200
        with httpx.Client(base_url=url, timeout=10) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            assert post(client, sample_records(spec, 2)).status_code == 200
            # The slash redirect never sends a client to the host its Host header named.
            moved = client.get("/metadata/", headers={"Host": "evil.example"})
            assert moved.is_redirect and moved.headers["location"] == "/metadata"
            big = client.post("/predict", content=b" " * (5 << 20))
            assert big.status_code == 413, big.text
