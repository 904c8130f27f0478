"""The Bento's Python packages, pinned from `constraints.txt`, the one place versions live.

`bentofile.yaml` names the distributions the service needs, without versions. At build time
their dependency closure is read from the installed distributions' metadata and every member is
pinned at the version `constraints.txt` fixes, so a Bento installs exactly the set the tests
ran, without resolving anything over the network and without a third copy of the pins.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

CONSTRAINTS = "constraints.txt"


def read_constraints(path: str | Path) -> dict[NormalizedName, str]:
    """`name==version` lines of a constraints file, by normalized name."""
    pins: dict[NormalizedName, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if len(versions) != 1:
            raise ValueError(f"{path}: {line!r} is not an exact pin (name==version)")
        pins[canonicalize_name(requirement.name)] = f"{requirement.name}=={versions[0]}"
    return pins


def dependency_closure(names: list[str]) -> set[NormalizedName]:
    """The named distributions and everything they require (with the extras asked for), as
    installed here; markers are judged for this interpreter, the one the Bento records."""
    extras_of: dict[NormalizedName, set[str]] = {}
    pending = [Requirement(name) for name in names]
    while pending:
        requirement = pending.pop()
        key = canonicalize_name(requirement.name)
        wanted = set(requirement.extras)
        if key in extras_of and wanted <= extras_of[key]:
            continue
        extras_of[key] = extras_of.get(key, set()) | wanted
        environments = [{"extra": extra} for extra in extras_of[key] or {""}]
        for text in metadata.distribution(requirement.name).requires or []:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                pending.append(dependency)
    return set(extras_of)


def pinned_requirements(names: list[str], constraints: str | Path) -> list[str]:
    """`name==version` for the closure of `names`, every version from `constraints`, sorted.

    A name given with a version, or a dependency the constraints do not pin, is an error:
    either would let a second source of versions in.
    """
    versioned = [name for name in names if Requirement(name).specifier]
    if versioned:
        raise ValueError(f"versions belong in {CONSTRAINTS} only, not here: {versioned}")
    pins = read_constraints(constraints)
    closure = dependency_closure(names)
    unpinned = sorted(closure - pins.keys())
    if unpinned:
        raise ValueError(f"{constraints} pins no version of {unpinned}")
    return [pins[name] for name in sorted(closure)]
