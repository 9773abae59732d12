"""The zone checker's judgements, on hand-made execution logs and records (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetsched.devkit.zones import zone_config

from .checker import Run, Window, judge
from .elections import groups, zone_of

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nats"


def window(**overrides: object) -> Window:
    base: dict[str, object] = {
        "fault_at": 100.0,
        "heal_at": 110.0,
        "before_s": 5.0,
        "after_s": 5.0,
        "affected": {"z1-w0"},
        "majority": {"z2-w0", "z3-w0"},
        "cut": {"z1-w0"},
    }
    return Window(**{**base, **overrides})  # type: ignore[arg-type]


def steady(hosts: tuple[str, ...] = ("z2-w0",), start: float = 95.0, end: float = 115.0) -> list[Run]:
    """One job started every 0.5 s on `hosts`, each succeeding on its first attempt."""
    runs = []
    at, n = start, 0
    while at < end:
        runs.append(Run(at, 7, hosts[n % len(hosts)], f"steady{n}", 1, "start"))
        at, n = at + 0.5, n + 1
    return runs


def records_for(runs: list[Run]) -> dict[str, dict[str, object]]:
    last = {r.job_id: r for r in sorted(runs, key=lambda r: r.attempt)}
    return {
        job: {"state": "succeeded", "attempt": r.attempt, "result": {"pid": r.pid, "attempt": r.attempt}}
        for job, r in last.items()
    }


class TestJudge:
    def test_a_steady_run_passes(self) -> None:
        """Every job finished once, the majority never stalled: no problems."""
        runs = steady()
        verdict = judge(runs, dict.fromkeys(records_for(runs), 90.0), records_for(runs), window())
        assert verdict.ok, verdict.problems
        assert verdict.max_gap_s <= 0.5
        assert verdict.rate_during == 2.0

    def test_an_unfinished_job_is_lost(self) -> None:
        """An accepted job whose record is not terminal is lost."""
        runs = steady()
        records = records_for(runs)
        records["steady3"]["state"] = "running"
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, window())
        assert verdict.lost == ["steady3"]

    def test_a_repeat_on_a_cut_off_worker_is_explained(self) -> None:
        """A job whose first attempt ran on the cut-off worker may run again elsewhere."""
        runs = [*steady(), Run(99.0, 5, "z1-w0", "j", 1, "start"), Run(103.0, 7, "z2-w0", "j", 2, "start")]
        verdict = judge(runs, dict.fromkeys(records_for(runs), 90.0), records_for(runs), window())
        assert (verdict.duplicates, verdict.explained, verdict.unexplained) == (1, 1, [])

    def test_a_repeat_on_a_healthy_worker_is_not(self) -> None:
        """A job rerun though its first worker was never hit is an unexplained duplicate."""
        runs = [*steady(), Run(99.0, 7, "z2-w0", "j", 1, "start"), Run(103.0, 8, "z3-w0", "j", 2, "start")]
        verdict = judge(runs, dict.fromkeys(records_for(runs), 90.0), records_for(runs), window())
        assert len(verdict.unexplained) == 1
        assert not verdict.ok

    def test_a_result_from_an_older_attempt_is_stale(self) -> None:
        """A succeeded record whose result came from an earlier attempt means a stale completion won."""
        runs = [*steady(), Run(99.0, 5, "z1-w0", "j", 1, "start"), Run(103.0, 7, "z2-w0", "j", 2, "start")]
        records = records_for(runs)
        records["j"]["result"] = {"pid": 5, "attempt": 1}
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, window())
        assert len(verdict.stale_accepted) == 1

    def test_a_stall_longer_than_the_limit_fails(self) -> None:
        """Six seconds without a start in the majority during the fault is a failure, with its end."""
        runs = [r for r in steady() if not 101.0 < r.at < 107.0]
        verdict = judge(runs, dict.fromkeys(records_for(runs), 90.0), records_for(runs), window())
        assert verdict.max_gap_s == 6.0
        assert verdict.resume_s == 7.0
        assert not verdict.ok

    def test_a_stall_after_the_heal_fails(self) -> None:
        """Healing may disrupt too: no job started for 8 s after it is a failure."""
        runs = steady(end=110.0)
        verdict = judge(runs, dict.fromkeys(records_for(runs), 90.0), records_for(runs), window(after_s=8.0))
        assert verdict.heal_gap_s == 8.0
        assert not verdict.ok

    def test_starts_on_a_cut_off_host_during_the_fault_are_flagged(self) -> None:
        """A cut-off worker starting jobs well into the fault made progress it could not keep."""
        runs = [*steady(), Run(105.0, 5, "z1-w0", "k", 1, "start")]
        verdict = judge(runs, dict.fromkeys(records_for(runs), 90.0), records_for(runs), window())
        assert len(verdict.minority_starts) == 1


class TestZoneConfig:
    def test_deployed_settings_kept_hosts_moved_into_the_zone(self, tmp_path: Path) -> None:
        """Routes, listen and monitoring addresses move to the zone; sync and cluster settings stay."""
        text = zone_config((DEPLOY / "cluster-2.conf").read_text(), 2, tmp_path / "s")
        assert "listen: 198.18.2.1:4223" in text
        assert 'http: "198.18.2.1:8223"' in text
        assert "nats-route://198.18.3.1:6224" in text
        assert "sync_interval: always" in text
        assert f'store_dir: "{tmp_path / "s"}"' in text
        assert "jetsched-nats-" not in text.split("server_name")[1].split("\n", 1)[1]


class TestElections:
    """A lost NATS node's groups must be re-elected, and starts resume within 1 s of that."""

    def gap(self, start: float, end: float) -> list[Run]:
        return [r for r in steady(("z2-w0",)) if not start <= r.at < end]

    def test_starts_resuming_right_after_the_election_pass(self) -> None:
        runs = self.gap(100.0, 106.5)  # stalled 6.5 s, the election took 6.2 s
        records = records_for(runs)
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, window(elections=[(100.0, 106.2)]))
        assert verdict.ok, verdict.problems
        assert verdict.elected_s == pytest.approx(6.2)
        assert verdict.after_election_s == pytest.approx(0.3)

    def test_starts_resuming_later_fail(self) -> None:
        runs = self.gap(100.0, 108.0)
        records = records_for(runs)
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, window(elections=[(100.0, 106.2)]))
        assert any("after the election" in p for p in verdict.problems), verdict.problems

    def test_an_election_that_never_came_fails(self) -> None:
        runs = steady(("z2-w0",))
        records = records_for(runs)
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, window(elections=[(100.0, None)]))
        assert any("no new leader" in p for p in verdict.problems), verdict.problems

    def test_each_of_several_kills_is_judged(self) -> None:
        """Four kills: the second failover's slow resume is caught though the others were quick."""
        runs = [r for r in steady(("z2-w0",), end=160) if not (100 <= r.at < 106 or 114 <= r.at < 122)]
        records = records_for(runs)
        kills = [(100.0, 105.8), (114.0, 119.5), (128.0, 128.0)]
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, window(heal_at=150.0, elections=kills))
        assert [p for p in verdict.problems if "after the election" in p] == [
            "majority resumed 2.5s after the election at t+19.5s (node lost at t+14.0s; limit 1s)"
        ]


def test_groups_reads_leaders_from_jsz() -> None:
    jsz = {
        "meta_cluster": {"leader": "jetsched-nats-2"},
        "account_details": [
            {
                "stream_detail": [
                    {
                        "name": "KV_jobs",
                        "cluster": {"leader": "jetsched-nats-1"},
                        "consumer_detail": [
                            {"name": "reaper", "cluster": {"leader": "jetsched-nats-3", "replicas": [{}]}},
                            {"name": "feed", "cluster": {"leader": "jetsched-nats-1"}},
                        ],
                    },
                    {"name": "KV_leases", "cluster": {}},
                ]
            }
        ],
    }
    assert groups(jsz) == {
        "meta": "jetsched-nats-2",
        "stream KV_jobs": "jetsched-nats-1",
        "consumer KV_jobs/reaper": "jetsched-nats-3",
        "stream KV_leases": "",
    }
    assert zone_of("jetsched-nats-3") == 3
    assert zone_of("") is None


class TestHeal:
    def test_a_stall_after_the_heal_is_judged_from_the_re_election_it_caused(self) -> None:
        """The rejoining node made leaders step down: starts stopped until they were re-elected."""
        runs = [r for r in steady(("z2-w0",), end=125.0) if not 110.0 <= r.at < 116.4]
        records = records_for(runs)
        w = window(after_s=15.0, reelected=116.2)
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, w)
        assert verdict.heal_gap_s > 5
        assert verdict.after_reelection_s == pytest.approx(0.3)
        assert not [p for p in verdict.problems if "healing" in p], verdict.problems

    def test_a_stall_long_after_the_re_election_fails(self) -> None:
        runs = [r for r in steady(("z2-w0",), end=125.0) if not 110.0 <= r.at < 118.0]
        records = records_for(runs)
        verdict = judge(runs, dict.fromkeys(records, 90.0), records, window(after_s=15.0, reelected=116.2))
        assert any("after the last re-election" in p for p in verdict.problems), verdict.problems
