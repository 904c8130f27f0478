"""Which alias may point where, and what a move ends: the rules every alias move obeys.

They are checked in `aliases._change_locked`, under the model's lock and against the aliases
read under it, so no door (`promote --alias ...`, `rollback`, the Dagster jobs, the canary
analysis) gets around them:

- the canary and the shadow serve beside the champion, so they never name the champion's own
  version: a model compared with itself proves nothing, and the canary analysis would then
  "promote" what already serves;
- moving `champion` to the version that is the canary or the shadow ends that canary or shadow
  (its alias and the canary's weight) in the same registry write: it won, and what it was being
  compared with is gone. The `challenger` is a label the service does not read; it stays;
- a canary is set only with its traffic weight (`canary.set_canary`), never by a bare move or a
  rollback: it would answer the previous canary's share of traffic, or none.
"""

from __future__ import annotations

from collections.abc import Mapping

from lifecycle_assets import config
from lifecycle_assets.registry.ledger import AliasError
from lifecycle_assets.registry.refs import ModelRef

# The aliases the service and the CLI know; any other name would be recorded and then ignored.
KNOWN_ALIASES = (
    config.CHAMPION_ALIAS, config.CHALLENGER_ALIAS, config.CANARY_ALIAS, config.SHADOW_ALIAS,
)  # fmt: skip
# Aliases that serve beside the champion and so may never name the champion's own version.
BESIDE_CHAMPION = (config.CANARY_ALIAS, config.SHADOW_ALIAS)


class AliasMove(tuple):
    """The (previous holder, new holder) pair a move returns, as before, plus `ended`: the
    aliases the move removed because their version became the champion (alias -> version),
    and `adopted`: the alias already named the version, set outside the platform, and the
    move recorded it as promoted."""

    ended: dict[str, str]
    adopted: bool

    def __new__(
        cls,
        previous: ModelRef | None,
        current: ModelRef,
        ended: Mapping[str, str] | None = None,
        *,
        adopted: bool = False,
    ) -> AliasMove:
        move = super().__new__(cls, (previous, current))
        move.ended, move.adopted = dict(ended or {}), adopted
        return move

    @property
    def previous(self) -> ModelRef | None:
        return self[0]

    @property
    def current(self) -> ModelRef:
        return self[1]


def known(alias: str) -> str:
    """The alias, if the platform knows it: the operation jobs take it as free text, and a
    typo (`champoin`) would otherwise become an alias nothing serves, recorded as a success."""
    if alias not in KNOWN_ALIASES:
        raise AliasError(f"unknown alias {alias!r}: the aliases are {', '.join(KNOWN_ALIASES)}")
    return alias


def check_move(
    name: str,
    alias: str,
    to_version: str,
    live: Mapping[str, str],
    model_tags: Mapping[str, str | None],
) -> None:
    """AliasError when pointing `alias` at `to_version` breaks a rule; `live` is what the
    registry shows now, `model_tags` what the move writes with the alias."""
    if alias in BESIDE_CHAMPION and live.get(config.CHAMPION_ALIAS) == to_version:
        raise AliasError(f"{name} v{to_version} is the champion; it cannot also be the {alias}")
    weighed = model_tags.get(config.TAG_CANARY_WEIGHT) is not None
    if alias == config.CANARY_ALIAS and live.get(alias) != to_version and not weighed:
        raise AliasError(
            f"a canary is set with its traffic weight: `lifecycle canary {name} {to_version} "
            "--weight W` (or the canary job); nothing was changed"
        )


def ended_by(alias: str, to_version: str | None, live: Mapping[str, str]) -> dict[str, str]:
    """The aliases that end when `alias` moves to `to_version`: the canary and the shadow of
    that version, when it becomes the champion (alias -> version)."""
    if alias != config.CHAMPION_ALIAS or to_version is None:
        return {}
    return {other: to_version for other in BESIDE_CHAMPION if live.get(other) == to_version}
