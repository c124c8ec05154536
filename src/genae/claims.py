"""The claims an experiment makes about its runs (its `[[expect]]` entries): checked for form when
the experiment is loaded, so a malformed claim fails before hours of training instead of reading
"not checked" afterwards, and checked against the finished runs' metrics by the report.

Three forms:

    {metric, lower, than[, epoch]}       run `lower` has a lower value than run `than` (at the end,
                                         or on validation at `epoch`)
    {run, metric, exceeds}               a final value beats another metric of the same run (a
                                         baseline the run computes, such as k-means on pixels)
    {run, metric, at_least | at_most}    a final value lies within bounds

A final value is the run's test value (read once, at the end of the run or by `genae evaluate`);
a value at an `epoch` is that epoch's validation value, since the test split is not read before
the end. Each claim may carry a `text`, the claim in words (default: the metric's name), and a
`judged_on`: with several seeds, "mean" (the default) compares the means over the seeds,
"every_seed" requires the claim to hold for each seed on its own.
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from genae.errors import ConfigError

JUDGED_ON = ("mean", "every_seed")


class RunRecord(Protocol):
    """What a claim reads of one seed's run."""

    @property
    def seed(self) -> int: ...

    def final(self) -> Mapping[str, Any]:
        """The final test values, by metric name (no `test_` prefix)."""
        ...

    def validation(self, epoch: int) -> Mapping[str, Any]:
        """The validation values at `epoch`, by metric name (no `val_` prefix); empty when the
        run has no such epoch."""
        ...

    def collapsed(self) -> str | None:
        """Why the run is a failure rather than a result (e.g. a collapsed generator), or None."""
        ...


@dataclass(frozen=True)
class Outcome:
    """A checked claim. ok: True (holds), False (fails) or None (could not be checked: a run or
    a metric is missing); detail: the numbers it was decided on; judged_on: "mean" or
    "every_seed"; seeds: the seeds it read; per_seed: each seed's (seed, ok) for every_seed."""

    text: str
    ok: bool | None
    detail: str
    judged_on: str = "mean"
    seeds: tuple[int, ...] = ()
    per_seed: tuple[tuple[int, bool], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "ok": self.ok,
            "detail": self.detail,
            "judged_on": self.judged_on,
            "seeds": list(self.seeds),
            "per_seed": [{"seed": seed, "ok": ok} for seed, ok in self.per_seed],
        }


def decimals_for(values: Sequence[float]) -> int:
    """Decimals that show every one of `values` (and their mean and sd) alike: 4 for small
    numbers, 2 once one reaches 10."""
    return 4 if all(abs(v) < 10 for v in values) else 2


def summary(values: Sequence[float]) -> str:
    """One value as it is; several as 'mean M ± SD (v1, v2, ...)' with the sample sd (n - 1)."""
    d = decimals_for(values)
    if len(values) == 1:
        return f"{values[0]:.{d}f}"
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    return f"mean {mean:.{d}f} ± {sd:.{d}f} ({', '.join(f'{v:.{d}f}' for v in values)})"


@dataclass(frozen=True)
class Claim(ABC):
    """One claim; `Claim.parse` builds the form an `[[expect]]` entry has. A form names the
    values it compares for one seed (`numbers`) and says when they make it hold (`holds`)."""

    metric: str
    text: str
    form = ""  # the form's keys, for error messages

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
        judged_on = entry.get("judged_on", "mean")
        if judged_on not in JUDGED_ON:
            raise ConfigError(
                f"{where}: 'judged_on': expected 'mean' or 'every_seed', got {judged_on!r}"
            )
        claim: Claim
        if "lower" in entry:
            epoch = entry.get("epoch")
            if epoch is not None and (not isinstance(epoch, int) or epoch < 1):
                raise ConfigError(f"{where}: 'epoch': expected an integer >= 1, got {epoch!r}")
            claim = LowerThan(metric, text, judged_on, entry["lower"], entry.get("than"), epoch)
        elif "exceeds" in entry:
            claim = Exceeds(metric, text, judged_on, entry.get("run"), entry["exceeds"])
        elif "at_least" in entry or "at_most" in entry:
            for key in ("at_least", "at_most"):
                bound = entry.get(key)
                if bound is not None and not isinstance(bound, (int, float)):
                    raise ConfigError(f"{where}: '{key}': expected a number, got {bound!r}")
            claim = Within(
                metric,
                text,
                judged_on,
                entry.get("run"),
                entry.get("at_least"),
                entry.get("at_most"),
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

    judged_on: str = "mean"

    @abstractmethod
    def runs(self) -> tuple[Any, ...]:
        """The names of the runs the claim reads."""

    @abstractmethod
    def labels(self) -> tuple[str, ...]:
        """What each of `numbers` is, in words."""

    @abstractmethod
    def numbers(self, runs: Mapping[str, RunRecord]) -> tuple[float | None, ...]:
        """The values the claim compares for one seed (`runs`: that seed's run, by name)."""

    @abstractmethod
    def holds(self, numbers: tuple[float, ...]) -> bool:
        """Whether the claim holds for these values (one seed's, or the means over seeds)."""

    def note(self) -> str:
        """What the detail ends with (a bound, say)."""
        return ""

    def check(self, runs: Mapping[str, Sequence[RunRecord]]) -> Outcome:
        """The claim's outcome on `runs`: each run's records by name, one record per seed. The
        seeds read are those every named run has."""

        def outcome(ok: bool | None, detail: str, seeds=(), per_seed=()) -> Outcome:
            return Outcome(self.text, ok, detail, self.judged_on, tuple(seeds), tuple(per_seed))

        try:
            by_seed = {name: {r.seed: r for r in runs[name]} for name in self.runs()}
        except KeyError as exc:
            return outcome(None, f"run {exc} not in this report")
        seeds = sorted(set.intersection(*(set(records) for records in by_seed.values())))
        if not seeds:
            return outcome(None, "no seed that every run has")
        failed_runs = [
            f"{name} seed {s} {why}"
            for name in self.runs()
            for s in seeds
            if (why := by_seed[name][s].collapsed())
        ]
        if failed_runs:  # a collapsed run is not a result, whatever its numbers
            return outcome(False, "; ".join(failed_runs), seeds)
        values = {s: self.numbers({n: by_seed[n][s] for n in self.runs()}) for s in seeds}
        missing = [s for s in seeds if any(v is None for v in values[s])]
        if missing:
            which = f" (seed {', '.join(map(str, missing))})" if len(seeds) > 1 else ""
            return outcome(None, f"not measured{which}", seeds)
        columns = [[values[s][i] for s in seeds] for i in range(len(self.labels()))]
        parts = [f"{label} {summary(column)}" for label, column in zip(self.labels(), columns)]
        detail = "; ".join(parts) + self.note()
        if self.judged_on == "mean":
            ok = self.holds(tuple(statistics.fmean(column) for column in columns))
            return outcome(ok, detail, seeds)
        per_seed = [(s, self.holds(values[s])) for s in seeds]  # type: ignore[arg-type]
        failed = [str(s) for s, ok in per_seed if not ok]
        detail += f"; fails for seed {', '.join(failed)}" if failed else ""
        return outcome(not failed, detail, seeds, per_seed)


@dataclass(frozen=True)
class LowerThan(Claim):
    lower: str = ""
    than: str = ""
    epoch: int | None = None
    form = "{metric, lower, than}"

    def runs(self) -> tuple[Any, ...]:
        return (self.lower, self.than)

    def labels(self) -> tuple[str, ...]:
        where = f"validation {self.metric} at epoch {self.epoch}" if self.epoch else ""
        first = f"{where}: {self.lower}" if where else f"test {self.metric}: {self.lower}"
        return (first, self.than)

    def numbers(self, runs: Mapping[str, RunRecord]) -> tuple[float | None, ...]:
        def value(run: RunRecord) -> float | None:
            values = run.final() if self.epoch is None else run.validation(self.epoch)
            return values.get(self.metric)

        return (value(runs[self.lower]), value(runs[self.than]))

    def holds(self, numbers: tuple[float, ...]) -> bool:
        return numbers[0] < numbers[1]


@dataclass(frozen=True)
class Exceeds(Claim):
    run: str = ""
    exceeds: str = ""
    form = "{run, metric, exceeds}"

    def runs(self) -> tuple[Any, ...]:
        return (self.run,)

    def labels(self) -> tuple[str, ...]:
        return (f"{self.run}: test {self.metric}", self.exceeds)

    def numbers(self, runs: Mapping[str, RunRecord]) -> tuple[float | None, ...]:
        final = runs[self.run].final()
        return (final.get(self.metric), final.get(self.exceeds))

    def holds(self, numbers: tuple[float, ...]) -> bool:
        return numbers[0] > numbers[1]


@dataclass(frozen=True)
class Within(Claim):
    run: str = ""
    at_least: float | None = None
    at_most: float | None = None
    form = "{run, metric, at_least | at_most}"

    def runs(self) -> tuple[Any, ...]:
        return (self.run,)

    def labels(self) -> tuple[str, ...]:
        return (f"{self.run} test {self.metric}",)

    def numbers(self, runs: Mapping[str, RunRecord]) -> tuple[float | None, ...]:
        return (runs[self.run].final().get(self.metric),)

    def holds(self, numbers: tuple[float, ...]) -> bool:
        (value,) = numbers
        if self.at_least is not None and value < self.at_least:
            return False
        return self.at_most is None or value <= self.at_most

    def note(self) -> str:
        bounds = [f"at least {self.at_least}"] if self.at_least is not None else []
        bounds += [f"at most {self.at_most}"] if self.at_most is not None else []
        return f" ({' and '.join(bounds)})"


def check_claims(claims: Sequence[Claim], runs: Mapping[str, Sequence[RunRecord]]) -> list[Outcome]:
    """Each claim's outcome on `runs` (each run's records by name, one per seed)."""
    return [claim.check(runs) for claim in claims]
