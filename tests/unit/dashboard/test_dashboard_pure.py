"""The dashboard's pure parts: parameter checks, access decisions, SSE frames and summaries."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
import pytest

from jetsched.core.changes import Change
from jetsched.core.ids import new_ulid
from jetsched.core.models import JobState
from jetsched.dashboard import params, shapes
from jetsched.dashboard.access import Access, allowed_hosts, host_ok, origin_ok
from jetsched.dashboard.events import RESYNC, Moves, frame, job_event
from jetsched.dashboard.live import Stream

ULID = new_ulid(1_700_000_000_000)


class TestParams:
    @pytest.mark.parametrize(
        "value",
        ["", "x", ULID.lower(), ULID + "0", "../" + ULID[3:], ULID[:-1] + "U", "*", ">"],
        # Named, not shown: the ULID is random, and xdist needs every worker to collect the same ids.
        ids=["empty", "x", "lowercase", "27-chars", "path", "not-base32", "star", "gt"],
    )
    def test_job_ids_must_be_ulids(self, value: str) -> None:
        """Anything but 26 characters of Crockford base32 is refused."""
        with pytest.raises(params.BadParam) as caught:
            params.job_id(value)
        assert caught.value.field == "id"

    def test_a_ulid_is_accepted(self) -> None:
        """A ULID passes unchanged."""
        assert params.job_id(ULID) == ULID

    @pytest.mark.parametrize("value", ["", "a.*", "a.>", "a..b", ".a", "a b", "é", "a" * 129])
    def test_capabilities_follow_the_wire_rules(self, value: str) -> None:
        """Wildcards, empty tokens, spaces and over-long names are refused."""
        with pytest.raises(params.BadParam):
            params.capability(value)

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ({}, {"limit": 50}),
            ({"state": "dead", "limit": "200"}, {"state": "dead", "limit": 200}),
            (
                {"capability": "email.send", "after": ULID},
                {"capability": "email.send", "after": ULID, "limit": 50},
            ),
        ],
    )
    def test_job_filters(self, given: dict[str, str], expected: dict[str, object]) -> None:
        """Known filters become the `jobs.list` body, with a bounded default limit."""
        assert params.job_filters(given) == expected

    @pytest.mark.parametrize(
        ("given", "field"),
        [
            ({"state": "bogus"}, "state"),
            ({"limit": "0"}, "limit"),
            ({"limit": "201"}, "limit"),
            ({"limit": "-1"}, "limit"),
            ({"limit": "1e3"}, "limit"),
            ({"limit": "٣"}, "limit"),
            ({"after": "x"}, "after"),
            ({"debug": "1"}, "debug"),
        ],
    )
    def test_bad_job_filters_name_their_field(self, given: dict[str, str], field: str) -> None:
        """A bad or unknown filter is refused, naming itself."""
        with pytest.raises(params.BadParam) as caught:
            params.job_filters(given)
        assert caught.value.field == field
        assert caught.value.body()["error"]["code"] == "invalid_field"

    @pytest.mark.parametrize("value", ["", "\x00", "a\nb", "x" * 257])
    def test_error_types_are_printable_and_bounded(self, value: str) -> None:
        """Control characters and over-long error types are refused."""
        with pytest.raises(params.BadParam):
            params.error_type(value)

    def test_dead_filters_split_off_the_error_type(self) -> None:
        """The error type filters the page in the dashboard; the rest goes to `dead.list`."""
        assert params.dead_filters({"error_type": "ValueError", "capability": "a"}) == (
            {"limit": 50, "capability": "a"},
            "ValueError",
        )

    @pytest.mark.parametrize(
        "body",
        [[], "x", {}, {"error_type": 1}, {"error_type": "E", "capability": 2}, {"error_type": "E", "x": 1}],
    )
    def test_bulk_bodies(self, body: object) -> None:
        """A bulk action needs an error type and takes nothing but a capability besides."""
        with pytest.raises(params.BadParam):
            params.bulk(body)

    def test_bulk_body(self) -> None:
        """A valid bulk body gives (capability, error type)."""
        assert params.bulk({"error_type": "E", "capability": "a.b"}) == ("a.b", "E")
        assert params.bulk({"error_type": "E"}) == (None, "E")

    def test_sessions_and_schedule_ids(self) -> None:
        """Sessions and schedule ids are 1-64 of letters, digits, '_' and '-'."""
        assert params.session("01kbz-a_b") == "01kbz-a_b"
        assert params.schedule_id("nightly") == "nightly"
        for bad in ("", "a.b", "a b", "x" * 65):
            with pytest.raises(params.BadParam):
                params.session(bad)
            with pytest.raises(params.BadParam):
                params.schedule_id(bad)


class TestAccess:
    def test_read_only_refuses_every_change(self) -> None:
        """Without a configured token nothing may change, whatever is presented."""
        assert Access().refusal("anything") is not None
        assert not Access().operator

    def test_the_token_is_required_and_must_match(self) -> None:
        """Only the exact token allows a change."""
        access = Access("s3cret-token-0123456789")
        assert access.operator
        assert access.refusal(None) is not None
        assert access.refusal("") is not None
        assert access.refusal("s3cret-token-012345678") is not None
        assert access.refusal("s3cret-token-0123456789x") is not None
        assert access.refusal("s3cret-token-0123456789") is None

    @pytest.mark.parametrize("token", ["short", "x" * 257])
    def test_tokens_are_long_enough(self, token: str) -> None:
        """A token must not be guessable: 16-256 characters."""
        with pytest.raises(ValueError, match="16-256"):
            Access(token)

    def test_loopback_hosts(self) -> None:
        """Bound to loopback, only loopback names with or without the port are answered."""
        hosts = allowed_hosts("127.0.0.1", 8080)
        assert host_ok("127.0.0.1:8080", hosts)
        assert host_ok("localhost:8080", hosts)
        assert host_ok("[::1]:8080", hosts)
        assert not host_ok("evil.example:8080", hosts)
        assert not host_ok(None, hosts)
        assert host_ok("proxy.internal", allowed_hosts("127.0.0.1", 8080, ("proxy.internal",)))

    def test_any_host_only_when_asked(self) -> None:
        """Only an explicit `--allow-host '*'` answers any Host; an empty allow-set answers none."""
        for bind in ("127.0.0.1", "0.0.0.0", "::", "10.0.0.5"):
            hosts = allowed_hosts(bind, 80, ("proxy.internal", "*"))
            assert host_ok("evil.attacker.example", hosts)
            assert host_ok(None, hosts)
        assert not host_ok("anything", frozenset())

    @pytest.mark.parametrize("bind", ["0.0.0.0", "::"])
    def test_wildcard_bind_refuses_foreign_hosts(self, bind: str) -> None:
        """Bound to every address without `--allow-host`, a foreign Host is refused (DNS rebinding: it
        used to be answered, like `'*'`); loopback names and the machine's own names and addresses are
        answered, with or without the port."""
        own = ("vm.example.org", "vm", "192.0.2.7", "2001:db8::7")
        hosts = allowed_hosts(bind, 8080, (), own)
        for foreign in ("evil.attacker.example", "evil.attacker.example:8080", "*.example", ""):
            assert not host_ok(foreign, hosts), foreign
        assert not host_ok(None, hosts)
        for ours in (
            "localhost",
            "127.0.0.1:8080",
            "[::1]:8080",
            "VM.example.org:8080",
            "vm",
            "192.0.2.7:8080",
        ):
            assert host_ok(ours, hosts), ours
        assert host_ok("[2001:db8::7]:8080", hosts)
        assert not host_ok("evil.example", allowed_hosts(bind, 8080))  # no own names found: loopback only
        assert host_ok("proxy.internal:8080", allowed_hosts(bind, 8080, ("proxy.internal",), own))

    def test_specific_bind(self) -> None:
        """Bound to one non-loopback address, that address (bracketed if IPv6) is answered."""
        assert host_ok("10.0.0.5:80", allowed_hosts("10.0.0.5", 80))
        assert host_ok("[2001:db8::5]:80", allowed_hosts("2001:db8::5", 80))
        assert not host_ok("evil.example:80", allowed_hosts("10.0.0.5", 80))

    def test_origins(self) -> None:
        """A change comes from no Origin or our own."""
        assert origin_ok(None, "127.0.0.1:8080")
        assert origin_ok("http://127.0.0.1:8080", "127.0.0.1:8080")
        assert not origin_ok("http://evil.example", "127.0.0.1:8080")
        assert not origin_ok("null", "127.0.0.1:8080")


class TestEvents:
    def test_a_change_becomes_a_small_event(self) -> None:
        """An event carries what the headers say, never the record."""
        change = Change(ULID, 7, JobState.RUNNING, "email.send", "sess-1", data=b'{"payload": "secret"}')
        assert job_event(change) == {
            "id": ULID,
            "state": "running",
            "capability": "email.send",
            "session": "sess-1",
            "workflow": None,
            "revision": 7,
        }

    def test_a_deletion(self) -> None:
        """A purged or expired record is an event with no state."""
        assert job_event(Change.deleted(ULID, 9))["state"] is None

    def test_a_move_to_history_is_no_news(self) -> None:
        """The purge after a succeeded record is not shown; a dead letter's purge is; memory is bounded."""
        moves = Moves(size=2)
        assert moves.news(Change(ULID, 1, JobState.SUCCEEDED, "a"))
        assert not moves.news(Change.deleted(ULID, 2))
        assert moves.news(Change("01ARZ3NDEKTSV4RRFFQ69G5FAW", 3, JobState.DEAD, "a"))
        assert moves.news(Change.deleted("01ARZ3NDEKTSV4RRFFQ69G5FAW", 4))
        for n in range(3):
            moves.news(Change(f"0000000000000000000000000{n}", 5, JobState.CANCELLED, "a"))
        assert moves.news(Change.deleted("00000000000000000000000000", 6))  # forgotten: shown

    def test_frames_are_one_data_line(self) -> None:
        """Newlines in values cannot break out of the data line."""
        raw = frame("job", {"capability": "a\n\nevent: evil\ndata: x"}, 3)
        head, data = raw.split(b"data: ", 1)
        assert head == b"event: job\nid: 3\n"
        assert data.endswith(b"\n\n")
        assert data.count(b"\n") == 2
        assert orjson.loads(data)["capability"] == "a\n\nevent: evil\ndata: x"


class TestStream:
    async def test_a_slow_browser_gets_one_resync(self) -> None:
        """Past its bound, a stream drops events and asks its browser once to refetch."""
        stream = Stream(size=2)
        for n in range(5):
            stream.put("job", n)
        got = [await stream.get() for _ in range(3)]
        assert got == [("job", 0), ("job", 1), (RESYNC, {})]
        stream.put("job", 9)
        assert await asyncio.wait_for(stream.get(), 1) == ("job", 9)


class TestShapes:
    RECORD: ClassVar[dict[str, Any]] = {
        "id": ULID,
        "capability": "email.send",
        "state": "dead",
        "attempt": 2,
        "max_attempts": 2,
        "payload": {"big": "x" * 1000},
        "lease": {"worker": "host-a", "session": "s2", "attempt": 2, "claimed_at_ms": 5, "token_hash": "h"},
        "errors": [
            {"attempt": 1, "at_ms": 1, "kind": "error", "type": "E", "message": "first", "traceback": "tb1"},
            {
                "attempt": 2,
                "at_ms": 6,
                "kind": "error",
                "type": "SMTPError",
                "message": "m" * 500,
                "traceback": "tb2",
            },
        ],
    }

    def test_summaries_leave_out_payloads_and_cut_texts(self) -> None:
        """A table row carries no payload, result or token hash, and bounded texts."""
        row = shapes.summary(self.RECORD)
        assert "payload" not in row
        assert "token_hash" not in orjson.dumps(row).decode()
        assert row["worker"] == "host-a"
        assert row["last_error"]["type"] == "SMTPError"
        assert len(row["last_error"]["message"]) == shapes.SUMMARY_TEXT

    def test_pages_filter_by_error_type(self) -> None:
        """Only jobs whose last error has the type asked for are kept."""
        other = {**self.RECORD, "errors": [self.RECORD["errors"][0]]}
        reply = {"jobs": [self.RECORD, other], "next": ULID}
        assert [j["last_error"]["type"] for j in shapes.page(reply, "SMTPError")["jobs"]] == ["SMTPError"]
        assert len(shapes.page(reply)["jobs"]) == 2

    def test_timeline_has_every_attempt(self) -> None:
        """Each attempt with its errors; the lease's worker on the attempt that held it."""
        timeline = shapes.timeline(self.RECORD)
        assert [a["attempt"] for a in timeline] == [1, 2]
        assert timeline[0]["errors"][0]["traceback"] == "tb1"
        assert timeline[1]["worker"] == "host-a"
        assert [a["outcome"] for a in timeline] == ["error", "error"]

    def test_timeline_names_the_worker_of_every_attempt(self) -> None:
        """Past attempts take their worker from their errors, the last one from `last_run` once its
        lease is gone; an old record's errors without a worker leave it unknown."""
        first, second = self.RECORD["errors"]
        record = {
            **self.RECORD,
            "state": "succeeded",
            "attempt": 3,
            "lease": None,
            "last_run": {"attempt": 3, "worker": "host-c", "session": "s3", "claimed_at_ms": 7},
            "errors": [first, {**second, "worker": "host-b", "session": "s2", "claimed_at_ms": 5}],
        }
        timeline = shapes.timeline(record)
        assert [(a["worker"], a["session"], a["claimed_at_ms"]) for a in timeline] == [
            (None, None, None),
            ("host-b", "s2", 5),
            ("host-c", "s3", 7),
        ]
        assert [a["outcome"] for a in timeline] == ["error", "error", "succeeded"]

    def test_timeline_of_a_success(self) -> None:
        """The last attempt of a succeeded job is shown as succeeded, with its finish time."""
        record = {
            **self.RECORD,
            "state": "succeeded",
            "errors": self.RECORD["errors"][:1],
            "finished_at_ms": 9,
        }
        timeline = shapes.timeline(record)
        assert timeline[1]["outcome"] == "succeeded"
        assert timeline[1]["finished_at_ms"] == 9
