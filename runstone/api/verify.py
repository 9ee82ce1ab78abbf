"""Compare two runs' results and say whether they match: IDENTICAL, EQUIVALENT or DIVERGED.

Layer 5. ``verify`` reads both runs through a ``Client`` and compares:

- every metric at every step, bit for bit, then within tolerance
  (``|b - a| <= atol + rtol * |a|``, per-metric overrides in a policy file);
- every fingerprint series (``run.fingerprint``), which has no tolerance;
- every output artifact by digest;
- the captured stdout/stderr, after normalizing what varies from run to run
  (timestamps, durations, addresses, the working folder, run IDs). It decides
  the verdict only for runs that log no metrics or fingerprints.

For a divergence it finds the first diverging step of each series and ranks
the recorded differences between the runs (``compare.differences``) as likely
causes, with the evidence for the ranking. Timing metrics (``step_time``,
``throughput``, ...) are left out unless the policy compares them.
"""

from __future__ import annotations

import fnmatch
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from runstone.api.compare import Difference, RunSide, differences
from runstone.api.fingerprint import FINGERPRINT_PREFIX
from runstone.entities import Run, RunStatus
from runstone.errors import ConfigError, NotFoundError

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "Cause",
    "LogComparison",
    "OutputComparison",
    "Policy",
    "SeriesComparison",
    "Verdict",
    "verify",
]

IDENTICAL, EQUIVALENT, DIVERGED = "IDENTICAL", "EQUIVALENT", "DIVERGED"
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-8
_TIMING = re.compile(
    r"(^|[/._-])(step_?time|iter_?time|batch_?time|data_?time|epoch_?time|forward_?time|backward_?time"
    r"|time|times|duration|elapsed|wall_?time|wallclock|latency|throughput|timestamp)$"
    r"|(^|[/._-])(samples|tokens|steps|examples|images|items|it|iters|sequences)_?per_?(s|sec|second)$"
    r"|_per_second$|/s$",
    re.I,
)


@dataclass(frozen=True)
class Policy:
    """Tolerances and what to leave out.

    A policy file (TOML) looks like::

        rtol = 1e-5                 # defaults for every metric
        atol = 1e-8
        fingerprints = "exact"      # or "report": listed, never decide the verdict
        outputs = "exact"           # or "report"
        ignore_outputs = ["*.log"]  # output artifact names to leave out
        timing_metrics = "ignore"   # or "compare"

        [metrics."val/*"]           # per-metric overrides, by glob; the first match wins
        rtol = 1e-3
        [metrics.lr]
        ignore = true
    """

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    metrics: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    fingerprints: str = "exact"
    outputs: str = "exact"
    ignore_outputs: tuple[str, ...] = ()
    timing_metrics: str = "ignore"
    source: str | None = None

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> Policy:
        """Read a policy file; ``overrides`` (``rtol=``, ``atol=``) win over it.

        Raises:
            ConfigError: the file cannot be read or holds an unknown key or a bad value.
        """
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"Cannot read the policy file {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"The policy file {path} is not valid TOML: {e}") from None
        return cls.from_dict(data, source=str(path)).with_tolerance(**overrides)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Policy:
        where = source or "the policy"
        known = {"rtol", "atol", "metrics", "fingerprints", "outputs", "ignore_outputs", "timing_metrics"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        metrics = data.get("metrics", {})
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"{where}: [metrics] must be a table of metric globs")
        for pattern, rules in metrics.items():
            bad = (
                sorted(set(rules) - {"rtol", "atol", "ignore"})
                if isinstance(rules, Mapping)
                else ["(not a table)"]
            )
            if bad:
                raise ConfigError(
                    f"{where}: metrics.{pattern}: unknown key(s) {', '.join(bad)}; use rtol, atol, ignore"
                )
            for key in ("rtol", "atol"):
                if key in rules:
                    _check_tolerance(rules[key], f"{where}: metrics.{pattern}.{key}")
        for key, allowed in (
            ("fingerprints", ("exact", "report")),
            ("outputs", ("exact", "report")),
            ("timing_metrics", ("ignore", "compare")),
        ):
            if key in data and data[key] not in allowed:
                raise ConfigError(f"{where}: {key} = {data[key]!r}; use one of {', '.join(allowed)}")
        ignore = data.get("ignore_outputs", [])
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise ConfigError(f"{where}: ignore_outputs must be a list of name globs")
        policy = cls(
            metrics=tuple((str(k), dict(v)) for k, v in metrics.items()),
            fingerprints=data.get("fingerprints", "exact"),
            outputs=data.get("outputs", "exact"),
            ignore_outputs=tuple(ignore),
            timing_metrics=data.get("timing_metrics", "ignore"),
            source=source,
        )
        try:
            return policy.with_tolerance(rtol=data.get("rtol"), atol=data.get("atol"))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    def with_tolerance(self, rtol: float | None = None, atol: float | None = None) -> Policy:
        """This policy with other default tolerances (None keeps the current one)."""
        policy = self
        if rtol is not None:
            policy = replace(policy, rtol=_check_tolerance(rtol, "rtol"))
        if atol is not None:
            policy = replace(policy, atol=_check_tolerance(atol, "atol"))
        return policy

    def tolerance(self, key: str) -> tuple[float, float] | None:
        """``(rtol, atol)`` for a metric, or None when it is left out."""
        for pattern, rules in self.metrics:
            if fnmatch.fnmatchcase(key, pattern):
                if rules.get("ignore"):
                    return None
                return float(rules.get("rtol", self.rtol)), float(rules.get("atol", self.atol))
        if self.timing_metrics == "ignore" and _TIMING.search(key):
            return None
        return self.rtol, self.atol

    def to_dict(self) -> dict[str, Any]:
        return {
            "rtol": self.rtol,
            "atol": self.atol,
            "metrics": {k: dict(v) for k, v in self.metrics},
            "fingerprints": self.fingerprints,
            "outputs": self.outputs,
            "ignore_outputs": list(self.ignore_outputs),
            "timing_metrics": self.timing_metrics,
            "source": self.source,
        }


def _check_tolerance(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or math.isinf(value):
        raise ConfigError(f"{what} must be a number of 0 or more, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SeriesComparison:
    """One metric's (or fingerprint series') comparison.

    Attributes:
        status: ``identical`` (every step bit-equal), ``equivalent`` (within
            tolerance), ``diverged`` or ``ignored`` (left out by the policy).
        first_difference: the first step whose values differ in any bit.
        first_divergence: the first step outside tolerance, or present on one side only.
        a_value, b_value: the values at ``first_divergence`` (else at ``first_difference``).
        max_abs, max_rel: the largest differences over the common steps.
    """

    key: str
    kind: str
    status: str
    steps: int = 0
    first_difference: int | None = None
    first_divergence: int | None = None
    a_value: Any = None
    b_value: Any = None
    max_abs: float = 0.0
    max_rel: float = 0.0
    only_a: int = 0
    only_b: int = 0
    rtol: float | None = None
    atol: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class OutputComparison:
    name: str
    status: str  # same | different | only in A | only in B | ignored
    a: str | None
    b: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class LogComparison:
    """The captured stdout/stderr, normalized. ``decisive``: it decided the verdict."""

    status: str  # same | different | absent
    decisive: bool
    lines: int = 0
    first_line: int | None = None
    a_line: str | None = None
    b_line: str | None = None
    normalized: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "normalized": dict(self.normalized)
        }


@dataclass(frozen=True)
class Cause:
    """A likely cause of a divergence: a title, a score (higher: likelier) and the evidence."""

    title: str
    score: int
    evidence: str
    category: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "score": self.score,
            "evidence": self.evidence,
            "category": self.category,
        }


@dataclass
class Verdict:
    """The outcome of comparing run A (the reference) with run B."""

    verdict: str
    a: Run
    b: Run
    metrics: list[SeriesComparison]
    fingerprints: list[SeriesComparison]
    outputs: list[OutputComparison]
    log: LogComparison
    differences: list[Difference]
    causes: list[Cause]
    first_divergence: int | None
    notes: list[str]
    policy: Policy
    repeat: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """0 for IDENTICAL or EQUIVALENT, 1 for DIVERGED."""
        return 1 if self.verdict == DIVERGED else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "a": _run_summary(self.a),
            "b": _run_summary(self.b),
            "first_divergence": self.first_divergence,
            "metrics": [m.to_dict() for m in self.metrics],
            "fingerprints": [f.to_dict() for f in self.fingerprints],
            "outputs": [o.to_dict() for o in self.outputs],
            "log": self.log.to_dict(),
            "causes": [c.to_dict() for c in self.causes],
            "differences": [d.to_dict() for d in self.differences],
            "notes": list(self.notes),
            "policy": self.policy.to_dict(),
            "repeat": self.repeat,
        }

    def headline(self) -> str:
        if self.verdict == IDENTICAL:
            return "IDENTICAL: every compared value is bit-equal"
        if self.verdict == EQUIVALENT:
            return f"EQUIVALENT: within rtol={self.policy.rtol:g}, atol={self.policy.atol:g}"
        where = f" at step {self.first_divergence}" if self.first_divergence is not None else ""
        return f"DIVERGED{where}"

    def to_text(self) -> str:
        """The report for a terminal."""
        return "\n".join(_lines(self, markdown=False)) + "\n"

    def to_markdown(self) -> str:
        """The report as Markdown."""
        return "\n".join(_lines(self, markdown=True)) + "\n"

    def to_html(self) -> str:
        """The report as a standalone HTML page."""
        body = []
        for line in _lines(self, markdown=True):
            if line.startswith("# "):
                body.append(f"<h1>{html.escape(line[2:])}</h1>")
            elif line.startswith("## "):
                body.append(f"<h2>{html.escape(line[3:])}</h2>")
            elif line.startswith("- "):
                if not body or not body[-1].startswith("<li>"):
                    body.append("<ul>")
                body.append(f"<li>{_inline(line[2:])}</li>")
            elif line:
                body.append(f"<p>{_inline(line)}</p>")
            if body and body[-1].startswith("<li>") and not line.startswith("- "):
                body.insert(len(body) - (1 if line else 0), "</ul>")
        if body and body[-1].startswith("<li>"):
            body.append("</ul>")
        color = {"IDENTICAL": "#1a7f37", "EQUIVALENT": "#9a6700", "DIVERGED": "#cf222e"}[self.verdict]
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>runstone verify: {self.verdict}</title>"
            "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
            f"color:#1f2328}}h1{{color:{color}}}code{{background:#f6f8fa;padding:0 .2em}}"
            "li{margin:.2em 0}</style>"
            "</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def _inline(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _run_summary(run: Run) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "project": run.project, "status": run.status.value}


def _value(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _lines(v: Verdict, *, markdown: bool) -> list[str]:
    h1, h2 = ("# ", "## ") if markdown else ("", "")
    q = "`" if markdown else ""
    out = [f"{h1}{v.headline()}", ""]
    out.append(f"- A: {q}{v.a.id}{q} ({v.a.name}, {v.a.status.value})")
    out.append(f"- B: {q}{v.b.id}{q} ({v.b.name}, {v.b.status.value})")
    compared = [m for m in v.metrics if m.status != "ignored"]
    if compared or v.fingerprints:
        out += ["", f"{h2}Metrics" if markdown else "metrics:"]
    for m in [*compared, *v.fingerprints]:
        label = m.key if m.kind == "metric" else f"fingerprint {m.key}"
        if m.status == "identical":
            out.append(f"- {label}: identical over {m.steps} steps")
        elif m.status == "equivalent":
            out.append(
                f"- {label}: equivalent over {m.steps} steps; bits differ from step {m.first_difference}, "
                f"largest difference {m.max_abs:.3g} (relative {m.max_rel:.3g})"
            )
        else:
            detail = f"A {_value(m.a_value)}, B {_value(m.b_value)}"
            if m.reason:
                detail = m.reason
            elif m.kind == "metric" and m.max_abs:
                detail += f"; largest difference {m.max_abs:.3g}"
            at = f" at step {m.first_divergence}" if m.first_divergence is not None else ""
            out.append(f"- {label}: DIVERGED{at} ({detail})")
    ignored = [m.key for m in v.metrics if m.status == "ignored"]
    if ignored:
        out.append(f"- not compared (timing metrics or the policy): {', '.join(ignored)}")
    if v.outputs:
        out += ["", f"{h2}Outputs" if markdown else "outputs:"]
        for o in v.outputs:
            digests = f" ({(o.a or '-')[:19]} → {(o.b or '-')[:19]})" if o.status == "different" else ""
            out.append(f"- {o.name}: {o.status}{digests}")
    if v.log.status != "absent" and (v.log.decisive or v.log.status == "different"):
        out += ["", f"{h2}Output log" if markdown else "output log:"]
        normalized = ", ".join(f"{n} {k}" for k, n in v.log.normalized.items() if n)
        said = f" (normalized: {normalized})" if normalized else ""
        if v.log.status == "same":
            out.append(f"- the same {v.log.lines} lines{said}")
        else:
            out.append(f"- first difference at line {v.log.first_line}{said}:")
            out.append(f"  A: {q}{v.log.a_line}{q}")
            out.append(f"  B: {q}{v.log.b_line}{q}")
            if not v.log.decisive:
                out.append("  (informative only: the runs log metrics, which decide the verdict)")
    if v.repeat:
        out += ["", f"{h2}Repeat" if markdown else "repeat:", f"- {v.repeat['conclusion']}"]
    if v.causes:
        out += ["", f"{h2}Likely causes" if markdown else "likely causes, likeliest first:"]
        for i, c in enumerate(v.causes, 1):
            out.append(f"- {i}. {c.title} — {c.evidence}")
    if v.differences:
        out += ["", f"{h2}Recorded differences" if markdown else "recorded differences (A → B):"]
        out += [f"- {d.text}" for d in v.differences]
    elif v.verdict != IDENTICAL:
        out += ["", "no recorded difference between the runs' code, config, environment, machine or inputs"]
    if v.notes:
        out += ["", f"{h2}Notes" if markdown else "notes:"]
        out += [f"- {n}" for n in v.notes]
    return out


# --- comparing -------------------------------------------------------------------------


def compare_series(key: str, a: Any, b: Any, rtol: float, atol: float) -> SeriesComparison:
    """Compare two metric histories step by step (numpy arrays)."""
    import numpy as np

    common, ia, ib = np.intersect1d(a.steps, b.steps, return_indices=True)
    only_a = np.setdiff1d(a.steps, b.steps)
    only_b = np.setdiff1d(b.steps, a.steps)
    x = np.asarray(a.values, dtype=np.float64)[ia]
    y = np.asarray(b.values, dtype=np.float64)[ib]
    same = (x.view(np.int64) == y.view(np.int64)) | (np.isnan(x) & np.isnan(y))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(x - y)
        within = same | (diff <= atol + rtol * np.abs(x))
        finite = ~same & np.isfinite(diff)
        scale = np.abs(x[finite])
        rel = np.where(scale > 0, diff[finite] / np.where(scale > 0, scale, 1), np.inf)
    first_difference = _first(common[~same], only_a, only_b)
    first_divergence = _first(common[~within], only_a, only_b)
    at = first_divergence if first_divergence is not None else first_difference
    a_value = b_value = None
    if at is not None:
        a_value = _at(a, at)
        b_value = _at(b, at)
    status = (
        "identical" if first_difference is None else "equivalent" if first_divergence is None else "diverged"
    )
    reason = ""
    if first_divergence is not None and (a_value is None or b_value is None):
        reason = f"step {at} was logged by {'A' if b_value is None else 'B'} only"
    return SeriesComparison(
        key=key,
        kind="metric",
        status=status,
        steps=len(common),
        first_difference=first_difference,
        first_divergence=first_divergence,
        a_value=a_value,
        b_value=b_value,
        max_abs=float(diff[finite].max()) if finite.any() else 0.0,
        max_rel=float(rel.max()) if rel.size else 0.0,
        only_a=len(only_a),
        only_b=len(only_b),
        rtol=rtol,
        atol=atol,
        reason=reason,
    )


def _first(*candidates: Any) -> int | None:
    firsts = [int(c[0]) for c in candidates if len(c)]
    return min(firsts) if firsts else None


def _at(history: Any, step: int) -> float | None:
    import numpy as np

    index = np.searchsorted(history.steps, step)
    if index < len(history.steps) and history.steps[index] == step:
        return float(history.values[index])
    return None


def _compare_fingerprints(key: str, a: Mapping[int, str], b: Mapping[int, str]) -> SeriesComparison:
    steps = sorted(set(a) | set(b))
    first = next((s for s in steps if a.get(s) != b.get(s)), None)
    reason = ""
    if first is not None and (first not in a or first not in b):
        reason = f"step {first} was fingerprinted by {'A' if first in a else 'B'} only"
    return SeriesComparison(
        key=key,
        kind="fingerprint",
        status="identical" if first is None else "diverged",
        steps=len(set(a) & set(b)),
        first_difference=first,
        first_divergence=first,
        a_value=a.get(first) if first is not None else None,
        b_value=b.get(first) if first is not None else None,
        only_a=len(set(a) - set(b)),
        only_b=len(set(b) - set(a)),
        reason=reason,
    )


def _output_names(side: RunSide) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for use in side.artifacts:
        if use.direction == "output":
            name = use.artifact.name.replace(side.run.id, "<run>")
            names.setdefault(name, []).append(use.artifact.digest)
    return names


def _compare_outputs(a: RunSide, b: RunSide, policy: Policy) -> list[OutputComparison]:
    left, right = _output_names(a), _output_names(b)
    out = []
    for name in sorted(set(left) | set(right)):
        da, db = left.get(name), right.get(name)
        first_a, first_b = (da[-1] if da else None), (db[-1] if db else None)
        if any(fnmatch.fnmatchcase(name, p) for p in policy.ignore_outputs):
            status = "ignored"
        elif da is None:
            status = "only in B"
        elif db is None:
            status = "only in A"
        else:
            status = "same" if da == db else "different"
        out.append(OutputComparison(name, status, first_a, first_b))
    return out


_NORMALIZE = (
    ("timestamps", re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?")),
    ("times", re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b")),
    ("rates", re.compile(r"\b\d+(?:\.\d+)?\s?(?:it/s|s/it|samples/s|tokens/s|steps/s)")),
    (
        "durations",
        re.compile(
            r"\b\d+(?:\.\d+)?(?:e[-+]?\d+)?\s?(?:ms|µs|us|ns|s|sec|secs|seconds|min|mins|minutes|h)\b"
        ),
    ),
    ("addresses", re.compile(r"\b0x[0-9a-fA-F]{6,}\b")),
)


def _normalize_log(text: str, replace_paths: Iterable[tuple[str, str]], counts: dict[str, int]) -> list[str]:
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.rsplit("\r", 1)[-1]  # a progress bar redrawn in place: its last state
        for old, new in replace_paths:
            if old and old in line:
                counts[new] = counts.get(new, 0) + line.count(old)
                line = line.replace(old, new)
        for name, pattern in _NORMALIZE:
            line, n = pattern.subn(f"<{name[:-1]}>", line)
            counts[name] = counts.get(name, 0) + n
        lines.append(line.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _compare_logs(a: Run, b: Run, text_a: bytes, text_b: bytes, decisive: bool) -> LogComparison:
    if not text_a and not text_b:
        return LogComparison("absent", False)
    counts: dict[str, int] = {}
    paths_a = [(a.cwd, "<cwd>"), (a.id, "<run id>")]
    paths_b = [(b.cwd, "<cwd>"), (b.id, "<run id>")]
    lines_a = _normalize_log(text_a.decode("utf-8", "replace"), paths_a, counts)
    lines_b = _normalize_log(text_b.decode("utf-8", "replace"), paths_b, counts)
    names = {"<cwd>": "working folders", "<run id>": "run IDs"}
    counts = {names.get(k, k): n for k, n in counts.items() if n}
    for i in range(max(len(lines_a), len(lines_b))):
        left = lines_a[i] if i < len(lines_a) else None
        right = lines_b[i] if i < len(lines_b) else None
        if left != right:
            return LogComparison(
                "different", decisive, len(lines_a), i + 1, left or "(no line)", right or "(no line)", counts
            )
    return LogComparison("same", decisive, len(lines_a), normalized=counts)


def _sides(client: Any, a: str, b: str) -> tuple[RunSide, RunSide]:
    sides = []
    for ref in (a, b):
        run = client.get_run(ref)
        sides.append(RunSide(run, client.get_records(run.id), client.artifacts(run.id)))
    return sides[0], sides[1]


def _fingerprint_series(client: Any, run: Run) -> dict[str, dict[int, str]]:
    names = [k.removeprefix(FINGERPRINT_PREFIX) for k in run.metrics if k.startswith(FINGERPRINT_PREFIX)]
    return {name: client.fingerprints(run.id, name) for name in names}


def verify(
    client: Any,
    a: str,
    b: str,
    *,
    policy: Policy | None = None,
    repeats: Sequence[str] = (),
    notes: Sequence[str] = (),
    changed_inputs: Sequence[str] = (),
) -> Verdict:
    """Compare run ``b`` with the reference run ``a`` and give the verdict.

    Args:
        client: a ``runstone.Client`` on the store holding both runs.
        a, b: run IDs, prefixes or names.
        policy: tolerances and what to leave out (default: rtol 1e-5, atol 1e-8).
        repeats: further reruns of ``a`` made in the same environment as
            ``b`` (``reproduce --repeat``): compared with ``b`` to tell
            intrinsic nondeterminism from environment drift.
        notes: lines to add to the report.
        changed_inputs: inputs the rerun used although their content had
            changed (``--allow-changed-inputs``): listed as causes.
    """
    policy = policy or Policy()
    side_a, side_b = _sides(client, a, b)
    run_a, run_b = side_a.run, side_b.run
    notes = list(notes)
    metrics = []
    first_steps: list[int] = []  # where A's compared series begin: a divergence there is "from the start"
    keys = sorted(k for k in set(run_a.metrics) | set(run_b.metrics) if not k.startswith(FINGERPRINT_PREFIX))
    for key in keys:
        tolerance = policy.tolerance(key)
        if tolerance is None:
            metrics.append(SeriesComparison(key, "metric", "ignored"))
            continue
        if key not in run_a.metrics or key not in run_b.metrics:
            side = "A" if key in run_a.metrics else "B"
            metrics.append(
                SeriesComparison(
                    key, "metric", "diverged", reason=f"logged by {side} only", first_divergence=None
                )
            )
            continue
        history_a = client.metric_history(run_a.id, key)
        if len(history_a.steps):
            first_steps.append(int(history_a.steps[0]))
        metrics.append(compare_series(key, history_a, client.metric_history(run_b.id, key), *tolerance))
    prints_a, prints_b = _fingerprint_series(client, run_a), _fingerprint_series(client, run_b)
    fingerprints = [
        _compare_fingerprints(name, prints_a.get(name, {}), prints_b.get(name, {}))
        for name in sorted(set(prints_a) | set(prints_b))
    ]
    outputs = _compare_outputs(side_a, side_b, policy)
    has_series = any(m.status != "ignored" for m in metrics) or bool(fingerprints)
    log = _compare_logs(run_a, run_b, _output(client, run_a), _output(client, run_b), decisive=not has_series)
    diverged = [m for m in metrics if m.status == "diverged"]
    if policy.fingerprints == "exact":
        diverged += [f for f in fingerprints if f.status == "diverged"]
    differing_outputs = [o for o in outputs if o.status not in ("same", "ignored")]
    # A direct run (python train.py) records no exit code; its rerun under `runstone run` records 0.
    codes = {run_a.exit_code or 0, run_b.exit_code or 0}
    failed = run_b.status is not run_a.status or len(codes) > 1
    if failed:
        notes.append(
            f"A ended {run_a.status.value} (exit code {run_a.exit_code}), "
            f"B ended {run_b.status.value} (exit code {run_b.exit_code})"
            + (f": {run_b.error}" if run_b.error else "")
        )
    if run_a.project != run_b.project:
        notes.append(f"A is in project {run_a.project!r}, B in {run_b.project!r}")
    for label, run in (("A", run_a), ("B", run_b)):
        if run.status is RunStatus.RUNNING:
            notes.append(f"{label} is still running: its results are not final")
    if not has_series and not outputs and log.status == "absent":
        notes.append("nothing to compare: neither run logged metrics, fingerprints, outputs or output text")
    exact = (
        all(m.status in ("identical", "ignored") for m in metrics)
        and all(f.status == "identical" for f in fingerprints)
        and all(o.status in ("same", "ignored") for o in outputs)
        and (log.status != "different" or not log.decisive)
    )
    if (
        diverged
        or failed
        or (differing_outputs and policy.outputs == "exact")
        or (log.decisive and log.status == "different")
    ):
        verdict = DIVERGED
    else:
        verdict = IDENTICAL if exact else EQUIVALENT
    if policy.fingerprints == "report" and any(f.status == "diverged" for f in fingerprints):
        notes.append('fingerprints differ, but the policy says fingerprints = "report"')
    firsts = [m.first_divergence for m in diverged if m.first_divergence is not None]
    first = min(firsts) if firsts else None
    bits = [m.first_difference for m in [*metrics, *fingerprints] if m.first_difference is not None]
    found = differences(side_a, side_b)
    repeat = _repeat(client, b, repeats, policy, diverged=verdict == DIVERGED) if repeats else None
    causes = (
        rank_causes(
            found,
            side_a,
            side_b,
            first=first if first is not None else min(bits, default=None),
            first_step=min(first_steps, default=0),
            diverged=diverged,
            failed=failed,
            repeat=repeat,
            changed_inputs=changed_inputs,
        )
        if verdict != IDENTICAL
        else []
    )
    return Verdict(
        verdict,
        run_a,
        run_b,
        metrics,
        fingerprints,
        outputs,
        log,
        found,
        causes,
        first,
        notes,
        policy,
        repeat,
    )


def _output(client: Any, run: Run) -> bytes:
    try:
        return bytes(client.read_output(run.id))
    except NotFoundError:
        return b""


def _repeat(
    client: Any, first: str, repeats: Sequence[str], policy: Policy, *, diverged: bool
) -> dict[str, Any]:
    """Compare the reruns with each other: do they differ among themselves, or all from A?"""
    results = []
    strict = replace(policy, rtol=0.0, atol=0.0, metrics=())  # the same program here: any bit counts
    for other in repeats:
        v = verify(client, first, other, policy=strict)
        results.append({"run": v.b.id, "verdict": v.verdict, "first_divergence": v.first_divergence})
    self_diverged = [r for r in results if r["verdict"] != IDENTICAL]
    n = len(repeats) + 1
    if self_diverged:
        step = self_diverged[0]["first_divergence"]
        kind = "intrinsic nondeterminism"
        conclusion = f"{kind}: {n} reruns in the same environment differ from each other" + (
            f" (first at step {step})" if step is not None else ""
        )
    elif diverged:
        kind = "environment drift"
        conclusion = (
            f"{kind}: the {n} reruns agree with each other bit for bit but not with A, so the "
            "difference lies between A's environment and this one"
        )
    else:
        kind = "none"
        conclusion = f"the {n} reruns agree with each other bit for bit, and with A"
    return {
        "kind": kind,
        "runs": [first, *[r["run"] for r in results]],
        "results": results,
        "self_consistent": not self_diverged,
        "conclusion": conclusion,
    }


def listed(found: Sequence[Difference]) -> str:
    """The first few differences as one line."""
    more = f"; and {len(found) - 4} more" if len(found) > 4 else ""
    return "; ".join(d.text for d in found[:4]) + more


def _unseeded(side: RunSide) -> bool:
    seeds = side.records.get("seeds") or {}
    return seeds.get("seed") is None


def rank_causes(
    found: Sequence[Difference],
    a: RunSide,
    b: RunSide,
    *,
    first: int | None,
    first_step: int,
    diverged: Sequence[SeriesComparison],
    failed: bool,
    repeat: Mapping[str, Any] | None,
    changed_inputs: Sequence[str] = (),
) -> list[Cause]:
    """Rank the recorded differences (and what their absence says) as causes, likeliest first."""
    causes: list[Cause] = []
    at_start = first is not None and first <= first_step
    late = first is not None and first > first_step
    where = (
        f"divergence from the first step ({first})"
        if at_start
        else f"identical until step {first - 1}"
        if late and first is not None
        else "the results differ"
    )

    def add(title: str, score: int, evidence: str, category: str) -> None:
        causes.append(Cause(title, score, evidence, category))

    if failed:
        add(
            "the rerun did not end as the original did",
            100,
            f"{b.run.status.value}: {b.run.error or 'no error recorded'}",
            "status",
        )
    if repeat is not None and not repeat["self_consistent"]:
        add(
            "intrinsic nondeterminism",
            98,
            repeat["conclusion"].split(": ", 1)[1] + "; look for a generator no seed reaches "
            "(np.random.default_rng() without a seed), thread races or nondeterministic kernels",
            "nondeterminism",
        )
    if repeat is not None and repeat["kind"] == "environment drift":
        add("environment drift", 80, repeat["conclusion"].split(": ", 1)[1], "environment")
    if (_unseeded(a) or _unseeded(b)) and (repeat is None or not repeat["self_consistent"]):
        unseeded = (
            "neither run set a seed"
            if _unseeded(a) and _unseeded(b)
            else ("run A set no seed" if _unseeded(a) else "run B set no seed")
        )
        add(
            "unseeded randomness",
            95 if at_start else 55,
            f"{where}, and {unseeded} (runstone.init(seed=...), runstone.seed() or runstone run --seed)",
            "seeds",
        )
    for path in changed_inputs:
        add(
            "a changed input",
            90,
            f"{path} was used although its content changed since the original run",
            "inputs",
        )
    by_category: dict[str, list[Difference]] = {}
    for d in found:
        by_category.setdefault(d.category, []).append(d)
    weights = {
        "code": (88, 75, "the code differs"),
        "command": (86, 70, "the command line differs"),
        "config": (87, 70, "the config differs"),
        "inputs": (89, 75, "an input differs"),
        "seeds": (85, 45, "the seeds differ"),
        "determinism": (50, 62, "determinism settings differ"),
        "interpreter": (45, 60, "the Python interpreter differs"),
        "variables": (45, 60, "numerics-relevant environment variables differ"),
        "blas": (40, 66, "the BLAS library or its threads differ"),
        "frameworks": (40, 64, "framework builds or settings differ"),
        "gpu": (40, 63, "the GPU, driver or CUDA version differs"),
        "cpu": (30, 50, "the CPU differs"),
        "os": (15, 25, "the operating system differs"),
        "runstone": (5, 5, "the runstone version differs"),
    }
    for category, (start_score, late_score, title) in weights.items():
        ds = by_category.get(category)
        if ds:
            add(
                title,
                start_score if at_start or first is None else late_score,
                f"{where}; {listed(ds)}",
                category,
            )
    packages = by_category.get("packages", [])
    numeric = sorted((d for d in packages if d.numeric), key=lambda d: d.a is None or d.b is None)
    if numeric:
        add(
            "a numerics package version differs",
            70 if at_start or first is None else 84,
            f"{where}; {listed(numeric)}",
            "packages",
        )
    others = [d for d in packages if not d.numeric]
    if others:
        add("other package versions differ", 20, f"{listed(others)}", "packages")
    gpu_used = any(((s.records.get("system") or {}).get("gpus") or {}).get("available") for s in (a, b))
    if gpu_used:
        relaxed = [
            s
            for s in (a, b)
            if not (s.records.get("seeds") or {}).get("deterministic")
            or (((s.records.get("system") or {}).get("frameworks") or {}).get("torch") or {}).get(
                "cudnn_benchmark"
            )
        ]
        if relaxed:
            alone = not [c for c in causes if c.category not in ("os", "runstone", "status")]
            add(
                "GPU nondeterminism",
                90 if alone else 60,
                f"{where}; on a GPU without deterministic algorithms (cuDNN autotuning or nondeterministic "
                "kernels); use runstone.seed(s, deterministic=True) or runstone run --seed S --deterministic",
                "nondeterminism",
            )
    if not causes and diverged:
        add(
            "intrinsic nondeterminism (no recorded difference)",
            60,
            f"{where} with the same code, config, seeds, environment and machine; "
            "confirm with runstone reproduce RUN --repeat 2. Files the run read without declaring them "
            "(git-ignored data not recorded with --input or run.use_dataset) are not rebuilt either",
            "nondeterminism",
        )
    causes.sort(key=lambda c: -c.score)
    return causes
