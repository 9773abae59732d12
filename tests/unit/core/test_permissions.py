"""The roles' NATS permissions, checked by matching subjects against them as nats-server would."""

from __future__ import annotations

import pytest

from jetsched.core import permissions, subjects


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a trailing `>` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


def allowed(patterns: tuple[str, ...], subject: str) -> bool:
    return any(matches(p, subject) for p in patterns)


class TestWorker:
    grant = permissions.worker("alpha", "_INBOX_UA")

    @pytest.mark.parametrize("capability", ["x", "email.send", ".".join("a" * 64)])
    def test_own_work_at_any_depth(self, capability: str) -> None:
        """A worker receives its own work for capabilities of any number of tokens."""
        assert allowed(self.grant.subscribe, subjects.work(capability, "alpha"))

    @pytest.mark.parametrize(
        "subject",
        [
            subjects.work("email.send", "beta"),
            subjects.control("beta"),
            subjects.heartbeat("beta"),
            "_INBOX.abc.1",
            "$KV.jobs.X",
        ],
    )
    def test_nothing_of_others(self, subject: str) -> None:
        """Another worker's subjects, the shared inbox and the KV are out of reach."""
        assert not allowed(self.grant.subscribe, subject)

    @pytest.mark.parametrize(
        ("subject", "expected"),
        [
            (subjects.heartbeat("alpha"), True),
            (subjects.outcome("email.send", "01J"), True),
            (subjects.progress("01J"), True),
            (subjects.changed("01J"), False),
            (subjects.heartbeat("beta"), False),
            ("$KV.jobs.X", False),
            ("$JS.API.STREAM.PURGE.KV_jobs", False),
            (subjects.submit("x"), False),
        ],
    )
    def test_publish(self, subject: str, expected: bool) -> None:
        """A worker publishes its heartbeats, outcomes and progress only."""
        assert allowed(self.grant.publish, subject) is expected

    @pytest.mark.parametrize("name", ["", "Alpha", "a.b", "a b", "-a", "a" * 64])
    def test_names_are_sessions(self, name: str) -> None:
        """A worker name must be usable as a session id: one lower-case subject token."""
        with pytest.raises(ValueError, match="worker name"):
            permissions.worker(name, "_INBOX_UA")


def test_client_submits_and_reads_by_id() -> None:
    """A client may submit and get a job and hear of its changes; no other API, no outcomes, no storage."""
    grant = permissions.client("_INBOX_UC")
    assert allowed(grant.publish, subjects.submit("email.send"))
    assert allowed(grant.publish, subjects.api("jobs.get"))
    for subject in (
        subjects.api("jobs.cancel"),
        subjects.outcome("a", "b"),
        "$JS.API.STREAM.MSG.GET.KV_jobs",
    ):
        assert not allowed(grant.publish, subject)
    assert grant.subscribe == ("_INBOX_UC.>", subjects.CHANGED_ALL)
    assert not allowed(grant.publish, subjects.changed("01KBZ3R6X9T2M0Q7D5W8C4N1HE"))


def test_changed_subject_hides_the_id() -> None:
    """A job's change subject is one token derived from its id, which it does not contain."""
    job_id = "01KBZ3R6X9T2M0Q7D5W8C4N1HE"
    subject = subjects.changed(job_id)
    assert matches(subjects.CHANGED_ALL, subject)
    assert job_id.lower() not in subject.lower()
    assert subject == subjects.changed(job_id) != subjects.changed(job_id[:-1] + "F")


@pytest.mark.parametrize("service", permissions.SERVICES)
def test_services_never_purge_or_delete_streams(service: str) -> None:
    """No service may purge or delete a stream, and each writes leases under its own name only."""
    grant = permissions.service(service, "_INBOX_US", ("KV_jobs", subjects.OUTCOMES_STREAM))
    for verb in ("PURGE", "DELETE"):
        assert not allowed(grant.publish, f"$JS.API.STREAM.{verb}.KV_jobs")
    assert allowed(grant.publish, subjects.changed("01KBZ3R6X9T2M0Q7D5W8C4N1HE"))
    other = next(s for s in permissions.SERVICES if s != service)
    assert not allowed(grant.publish, f"$KV.leases.{other}.shard.0")


def test_intake_takes_progress_reports_and_keeps_them() -> None:
    """Intake receives progress reports and writes the progress bucket; no other service does."""
    for name in permissions.SERVICES:
        grant = permissions.service(name, "_INBOX_US", ())
        takes = allowed(grant.subscribe, subjects.progress("01J")) and allowed(
            grant.publish, "$KV.progress.01J"
        )
        assert takes is (name == "intake"), name


def test_replies_go_only_to_inboxes() -> None:
    """A request's reply subject is answered only if it is an inbox: a forged one would be published to
    with the answering service's permissions (docs/security.md)."""
    for good in ("_INBOX.abc", "_INBOX.abc.def.7", "_INBOX_UABC123.x.y", "_INBOX_u-a_b.x"):
        assert subjects.is_reply(good), good
    for bad in (
        "",
        "$KV.jobs.01KBZ3R6X9T2M0Q7D5W8C4N1HE",
        "$JS.API.STREAM.DELETE.KV_jobs",
        "jetsched.api.stats",
        "_INBOX",
        "_INBOX.",
        "_INBOX..a",
        "_INBOX.a.",
        "_INBOX.*",
        "_INBOX.>",
        "_INBOX.a>",
        "_INBOX.a b",
        "_INBOX.a\tb",
        "_INBOX.é",
        "_INBOXX.a",
        "_INBOX_.a",
        "_INBOX_$.a",
        "_INBOX." + "a" * subjects.MAX_REPLY_BYTES,
    ):
        assert not subjects.is_reply(bad), bad
