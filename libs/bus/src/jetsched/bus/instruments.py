"""Every counter and histogram jetsched records, in one place (OpenTelemetry names, seconds as units).

Created at import on the global meter: a no-op until a process installs a meter provider
(`telemetry.setup`), after which the same instruments report. Prometheus sees them with its own
conventions: `jetsched.jobs.succeeded` → `jetsched_jobs_succeeded_total`, a histogram in seconds →
`jetsched_job_run_time_seconds_bucket` (docs/operations.md, "Metrics", lists them all).

Attributes are bounded sets — capability, verdict, kind, outcome — never a job id, so the number of
series grows with the number of capabilities, not of jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import metrics

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_meter = metrics.get_meter("jetsched")

#: From a millisecond to an hour: queue waits and run times span all of it.
SECONDS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    900,
    3600,
)


#: Every instrument here: name → its Prometheus name (what `/metrics` shows and dashboards query).
PROMETHEUS: dict[str, str] = {}


def _counter(name: str, description: str, unit: str = "{job}") -> metrics.Counter:
    PROMETHEUS[name] = name.replace(".", "_") + "_total"
    return _meter.create_counter(name, unit=unit, description=description)


class Tally:
    """A counter for a hot path: plain integers, read by the meter when it collects (an observable
    counter). The SDK's `Counter.add` costs ~10 µs a call — as much as the rest of a submit's validation
    — where this costs a dict update; what Prometheus and exporters see is the same monotonic sum.
    Added to from the event loop's thread only (a collection reads a snapshot from any thread)."""

    def __init__(self, name: str, description: str, unit: str = "{job}") -> None:
        PROMETHEUS[name] = name.replace(".", "_") + "_total"
        self._counts: dict[tuple[tuple[str, str], ...], int] = {}
        _meter.create_observable_counter(name, [self._observe], unit=unit, description=description)

    def add(self, amount: int, attributes: Mapping[str, str]) -> None:
        key = tuple(attributes.items())
        self._counts[key] = self._counts.get(key, 0) + amount

    def _observe(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return [metrics.Observation(n, dict(key)) for key, n in list(self._counts.items())]


def _seconds(name: str, description: str) -> metrics.Histogram:
    PROMETHEUS[name] = name.replace(".", "_") + "_seconds"
    return _meter.create_histogram(
        name, unit="s", description=description, explicit_bucket_boundaries_advisory=SECONDS
    )


# Jobs through their lifecycle (attribute `capability`).
submitted = Tally("jetsched.jobs.submitted", "jobs accepted by intake (not counting duplicates)")
started = _counter("jetsched.jobs.started", "attempts leased to a worker by a dispatcher")
succeeded = _counter("jetsched.jobs.succeeded", "jobs whose attempt succeeded")
failed = _counter("jetsched.jobs.failed", "attempts that failed (attribute `kind`: error, timeout, lost …)")
retried = _counter("jetsched.jobs.retried", "failed attempts whose job was queued to run again")
dead = _counter("jetsched.jobs.dead", "jobs that ended dead (attribute `kind`: why the last attempt ended)")
released = _counter("jetsched.jobs.released", "attempts handed back unrun by their worker")
rescued = _counter("jetsched.jobs.rescued", "running jobs taken back from a worker (attribute `verdict`)")
fenced = _counter(
    "jetsched.reports.fenced",
    "outcome reports rejected because their attempt had been superseded (a stale worker)",
    unit="{report}",
)

# Times.
queue_wait = _seconds("jetsched.job.queue_wait", "from ready (first time, for a rescued job) to claimed")
run_time = _seconds("jetsched.job.run_time", "from claim to the applied outcome (attribute `outcome`)")
submit_latency = _seconds("jetsched.submit.duration", "intake's handling of one submit request")
timer_lateness = _seconds("jetsched.timer.lateness", "how late the timer made a due job ready")
claim_latency = _seconds("jetsched.dispatch.claim_duration", "a dispatcher's claim: CAS and work message")
handler_time = _seconds("jetsched.worker.handler_duration", "a worker's handler run (attribute `outcome`)")
