"""The claims an experiment makes about its runs (its `[[expect]]` entries): checked for form when
the experiment is loaded, so a malformed claim fails before hours of training instead of reading
"not checked" afterwards, and checked against the finished runs' metrics by the report.

Three forms:

    {metric, lower, than[, epoch]}       run `lower` has a lower value than run `than` (at `epoch`,
                                         or at the end)
    {run, metric, exceeds}               a final value beats another metric of the same run (a
                                         baseline the run computes, such as k-means on pixels)
    {run, metric, at_least | at_most}    a final value lies within bounds

Each may carry a `text`, the claim in words (default: the metric's name).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from genae.errors import ConfigError


class RunRecord(Protocol):
    """What a claim reads of a run: its per-epoch metrics and its final values."""

    name: str
    history: list[dict[str, Any]]

    def final(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Outcome:
    """A checked claim. ok: True (holds), False (fails) or None (could not be checked: a run or
    a metric is missing); detail: the numbers it was decided on."""

    text: str
    ok: bool | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _value_at(run: RunRecord, metric: str, epoch: int | None) -> float | None:
    if epoch is None:
        return run.final().get(metric)
    for row in run.history:
        if row.get("epoch") == epoch:
            return row.get(metric)
    return None


class Claim(ABC):
    """One claim; `Claim.parse` builds the form an `[[expect]]` entry has."""

    metric: str
    text: str
    form: str  # the form's keys, for error messages

    @staticmethod
    def parse(
        entry: Mapping[str, Any], where: str, run_names: Collection[str] | None = None
    ) -> Claim:
        """The claim `entry` states. `where` starts each error message; with `run_names`, every
        run the claim names must be one of them."""
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a table, got {entry!r}")
        metric = entry.get("metric")
        if not isinstance(metric, str):
            raise ConfigError(f"{where}: expected a 'metric' name")
        text = str(entry.get("text", metric))
        claim: Claim
        if "lower" in entry:
            epoch = entry.get("epoch")
            if epoch is not None and (not isinstance(epoch, int) or epoch < 1):
                raise ConfigError(f"{where}: 'epoch': expected an integer >= 1, got {epoch!r}")
            claim = LowerThan(metric, text, entry["lower"], entry.get("than"), epoch)
        elif "exceeds" in entry:
            claim = Exceeds(metric, text, entry.get("run"), entry["exceeds"])
        elif "at_least" in entry or "at_most" in entry:
            for key in ("at_least", "at_most"):
                bound = entry.get(key)
                if bound is not None and not isinstance(bound, (int, float)):
                    raise ConfigError(f"{where}: '{key}': expected a number, got {bound!r}")
            claim = Within(
                metric, text, entry.get("run"), entry.get("at_least"), entry.get("at_most")
            )
        else:
            raise ConfigError(
                f"{where}: expected 'lower'/'than', 'exceeds', or 'at_least'/'at_most'"
            )
        if run_names is not None:
            for name in claim.runs():
                if name not in run_names:
                    raise ConfigError(
                        f"{where}: {claim.form} names run {name!r}; "
                        f"runs: {', '.join(sorted(run_names))}"
                    )
        return claim

    @abstractmethod
    def runs(self) -> tuple[Any, ...]:
        """The names of the runs the claim reads."""

    @abstractmethod
    def judge(self, runs: Mapping[str, RunRecord]) -> tuple[bool | None, str]:
        """(ok, detail); raises KeyError for a run that is not in `runs`."""

    def check(self, runs: Mapping[str, RunRecord]) -> Outcome:
        """The claim's outcome on `runs` (by name)."""
        try:
            ok, detail = self.judge(runs)
        except KeyError as exc:
            ok, detail = None, f"run {exc} not in this report"
        return Outcome(self.text, ok, detail)


@dataclass(frozen=True)
class LowerThan(Claim):
    metric: str
    text: str
    lower: str
    than: str
    epoch: int | None = None
    form = "{metric, lower, than}"

    def runs(self) -> tuple[Any, ...]:
        return (self.lower, self.than)

    def judge(self, runs: Mapping[str, RunRecord]) -> tuple[bool | None, str]:
        a, b = runs[self.lower], runs[self.than]
        va, vb = (_value_at(r, self.metric, self.epoch) for r in (a, b))
        if va is None or vb is None:
            return None, "not measured"
        where = f"epoch {self.epoch}" if self.epoch else "the end"
        return va < vb, f"{self.metric} at {where}: {a.name} {va:.2f}, {b.name} {vb:.2f}"


@dataclass(frozen=True)
class Exceeds(Claim):
    metric: str
    text: str
    run: str
    exceeds: str
    form = "{run, metric, exceeds}"

    def runs(self) -> tuple[Any, ...]:
        return (self.run,)

    def judge(self, runs: Mapping[str, RunRecord]) -> tuple[bool | None, str]:
        final = runs[self.run].final()
        value, baseline = final.get(self.metric), final.get(self.exceeds)
        if value is None or baseline is None:
            return None, "not measured"
        detail = f"{self.run}: {self.metric} {value:.4f}, {self.exceeds} {baseline:.4f}"
        return value > baseline, detail


@dataclass(frozen=True)
class Within(Claim):
    metric: str
    text: str
    run: str
    at_least: float | None = None
    at_most: float | None = None
    form = "{run, metric, at_least | at_most}"

    def runs(self) -> tuple[Any, ...]:
        return (self.run,)

    def judge(self, runs: Mapping[str, RunRecord]) -> tuple[bool | None, str]:
        value = runs[self.run].final().get(self.metric)
        if value is None:
            return None, "not measured"
        ok = True
        if self.at_least is not None:
            ok = value >= self.at_least
        if self.at_most is not None:
            ok = ok and value <= self.at_most
        bound = self.at_least if self.at_least is not None else self.at_most
        return ok, f"{self.run} {self.metric} {value:.4f} (bound {bound})"


def check_claims(claims: list[Claim], runs: Mapping[str, RunRecord]) -> list[Outcome]:
    return [claim.check(runs) for claim in claims]
