"""Which progress reports replace the stored one: only the lease holder's, only newer ones."""

from __future__ import annotations

import pytest

from jetsched.core import progress, states
from jetsched.core.models import JobRecord, JobRequest, Progress, ProgressReport

NOW = 1_700_000_000_000
JOB = "000000000000000000000000J1"


def running(token: str = "t1") -> JobRecord:
    ready = states.accept(JobRequest(), JOB, "email", NOW, None)
    return states.claim(ready, "host-1", "s1", token, NOW + 10)


def report(seq: int, attempt: int = 1, token: str = "t1", value: object = 0.5) -> ProgressReport:
    return ProgressReport(id=JOB, attempt=attempt, token=token, seq=seq, value=value)


def stored(seq: int, attempt: int = 1) -> Progress:
    return Progress(attempt=attempt, seq=seq, value=0.1, at_ms=NOW)


class TestAccept:
    @pytest.mark.parametrize(
        ("given", "kept"),
        [
            (None, stored(1)),
            (stored(1), stored(3)),
            (stored(2, attempt=0), stored(3)),
        ],
    )
    def test_a_newer_report_of_the_lease_holder_is_stored(
        self, given: Progress | None, kept: Progress
    ) -> None:
        """The holder's report replaces nothing or an older one, stamped with intake's time."""
        seq = kept.seq
        entry = progress.accept(running(), given, report(seq, value=0.1), NOW)
        assert entry == kept

    @pytest.mark.parametrize("seq", [1, 2])
    def test_an_older_or_repeated_report_changes_nothing(self, seq: int) -> None:
        """Reports that arrive out of order never move the progress back."""
        assert progress.accept(running(), stored(2), report(seq), NOW) is None

    @pytest.mark.parametrize(
        "bad",
        [report(1, token="guessed"), report(1, attempt=2)],
    )
    def test_without_the_lease_nothing_is_stored(self, bad: ProgressReport) -> None:
        """A forged token or another attempt's report is fenced out, as an outcome would be."""
        assert progress.accept(running(), None, bad, NOW) is None

    def test_a_job_that_is_not_running_takes_no_progress(self) -> None:
        """Once the attempt is over (here: cancelled), late reports are dropped."""
        done = states.cancel(running(), NOW + 20)
        assert progress.accept(done, None, report(1), NOW) is None


class TestCurrent:
    def test_only_the_latest_attempts_progress_shows(self) -> None:
        """An earlier attempt's progress is stale once the job runs again."""
        record = running()
        assert progress.current(record, stored(4)) == stored(4)
        assert progress.current(record, stored(4, attempt=0)) is None
        assert progress.current(record, None) is None
