"""The service when its alias ledger cannot be read (here a PostgreSQL ledger whose server
refuses the connection): every reader of it says so in the same public line, logs where the
ledger is and why, and serves nothing the ledger cannot vouch for. Before, start-up's search
for an earlier good version named the ledger by `ledger.path`, which only the SQLite ledger
has: a PostgreSQL ledger that could not be read crashed it with an AttributeError."""

from __future__ import annotations

import logging

import pytest

from lifecycle_assets import config
from lifecycle_assets.registry.ledger_pg import PostgresLedger
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.canary_weight import CanaryWeight
from lifecycle_assets.serving.fallback import (
    LEDGER_UNREADABLE,
    NothingToServe,
    choose,
    promotion_problems,
)

# Nothing listens on port 1: the connection is refused at once.
UNREACHABLE = PostgresLedger("postgresql://lifecycle@127.0.0.1:1/ledger")
LOGGED = "the alias ledger postgresql://lifecycle@127.0.0.1:1/ledger cannot be read"


def test_a_holder_is_refused_when_the_ledger_cannot_say_it_was_promoted(caplog) -> None:
    with caplog.at_level(logging.ERROR):
        assert promotion_problems(UNREACHABLE, "m", config.CHAMPION_ALIAS, "2") == [
            LEDGER_UNREADABLE
        ]
    assert LOGGED in caplog.text


def test_start_up_finds_no_earlier_version_in_a_ledger_it_cannot_read(caplog) -> None:
    holder = ModelRef("m", "2", run_id="r", source="models:/m/2")  # unregistered: refused

    def fetch(version: str) -> ModelRef:
        raise AssertionError(f"no earlier version to fetch, asked for v{version}")

    with caplog.at_level(logging.ERROR), pytest.raises(NothingToServe, match="no earlier"):
        choose("m", config.CHAMPION_ALIAS, holder, UNREACHABLE, fetch)
    assert LOGGED in caplog.text


def test_a_canary_gets_no_traffic_when_the_ledger_cannot_be_read(caplog) -> None:
    weight = CanaryWeight(UNREACHABLE, "m")
    with caplog.at_level(logging.ERROR):
        assert weight.weight("3", "1.0") == 0.0
    assert weight.problem == f"m `canary` v3 gets no traffic: {LEDGER_UNREADABLE}"
    assert LOGGED in caplog.text
