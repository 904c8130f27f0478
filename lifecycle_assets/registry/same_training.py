"""One registered version per distinct training of a model: same data, same spec, same code.

Two identical trainings started together (the schedule and a manual run, two `lifecycle run`s)
would otherwise both register: two versions of one model, each evaluated, gated and carded.
The training's identity (its training set digest, model spec hash and code) is a version tag.
It is known before the fit, so the training asset looks it up first and a training some live
version already holds is not fit at all (no MLflow run: there would be nothing in it). Two
trainings that both looked before either registered are told apart by registering, which looks
the key up again under the model's lock (the one alias moves take): the second finds the first's
version instead of adding a copy, and its MLflow run (it was fit and tracked) is kept and tagged
as a duplicate of that version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lifecycle_assets import config
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef, filter_literal, ref_of

TAG_TRAINING_KEY = "training_key"
# On the MLflow run of a training whose version was already registered by another run.
TAG_DUPLICATE_OF_VERSION = "duplicate_of_version"
TAG_DUPLICATE_OF_RUN = "duplicate_of_run"


class SameTrainingRegistered(Exception):
    """A version of this model already holds this training: nothing new was registered."""

    def __init__(self, ref: ModelRef):
        self.ref = ref
        super().__init__(f"v{ref.version} already holds this training (run {ref.run_id})")


def training_key(training_digest: str, spec_sha256: str | None, code: str | None) -> str | None:
    """The identity of a training, or None when part of it is unknown (then nothing is
    deduplicated: two trainings whose code cannot be named may differ)."""
    if not (training_digest and spec_sha256 and code):
        return None
    parts = {"training_set": training_digest, "model_spec": spec_sha256, "code": code}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def same_training(client: Any, name: str, key: str) -> ModelRef | None:
    """The oldest live version of `name` registered for this training key (retired versions
    are not served again, so a new training of theirs registers anew)."""
    matching = f"name = {filter_literal(name)} and tags.{TAG_TRAINING_KEY} = {filter_literal(key)}"
    found = client.search_model_versions(matching)
    live = [v for v in found if config.TAG_RETIRED not in (v.tags or {})]
    return ref_of(min(live, key=lambda v: int(v.version))) if live else None


@contextmanager
def registering_once(
    client: Any, name: str, run_id: str, once: tuple[Ledger, str] | None
) -> Iterator[None]:
    """Run the registration inside only if no version holds this training yet, under the
    model's lock (`once`: its ledger and the training's key; None registers unchecked); else
    tag `run_id` as its duplicate and raise `SameTrainingRegistered`."""
    if once is None:
        yield
        return
    ledger, key = once
    with ledger.lock(name):
        existing = same_training(client, name, key)
        if existing is None:
            yield
            return
    client.set_tag(run_id, TAG_DUPLICATE_OF_VERSION, existing.version)
    client.set_tag(run_id, TAG_DUPLICATE_OF_RUN, existing.run_id)
    raise SameTrainingRegistered(existing)
