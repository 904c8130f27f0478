"""A preflight's findings (errors, warnings, notes) and how they print and fail."""

from __future__ import annotations

from dataclasses import dataclass, field


class PreflightError(ValueError):
    """The data cannot be used with this spec as it is; the message says what to change."""


@dataclass(frozen=True)
class Finding:
    level: str  # "error", "warning" or "info"
    text: str

    def line(self) -> str:
        return (
            f"{self.level.upper():7} {self.text}"
            if self.level != "info"
            else f"        {self.text}"
        )


@dataclass
class PreflightReport:
    model: str
    source: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, text: str) -> None:
        self.findings.append(Finding(level, text))

    @property
    def errors(self) -> list[str]:
        return [f.text for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[str]:
        return [f.text for f in self.findings if f.level == "warning"]

    def lines(self) -> list[str]:
        return [f"preflight {self.model} ({self.source}):", *(f.line() for f in self.findings)]

    def raise_for_errors(self) -> None:
        if self.errors:
            raise PreflightError(f"{self.source}: " + "; ".join(self.errors))
