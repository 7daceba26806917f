"""Status updates during a long soak window (roles/migration/tasks/soak.yml): a window longer than
migration_status_interval is watched in stretches with an "In Progress" update to the team between them, through
ansible-playbook on the 3-node cluster (the lab inventory's data; consumer lag read from JetStream)."""

from __future__ import annotations

from tests.monitoring.webhook import Receiver
from lab.ansible_run import REPO, run_tasks

LAB = ["-i", str(REPO / "inventories" / "lab")]


def soak(cluster, tmp_path, url, seconds, every):
    task = {"name": "soak", "ansible.builtin.include_role": {"name": "athlete_ally.nats.migration",
                                                             "tasks_from": "soak"},
            "vars": {"migration_phase": 0, "migration_soak_seconds": seconds, "migration_status_interval": every,
                     "migration_notify_url": url, "migration_prometheus_url": "",
                     "migration_progress_dir": str(tmp_path)}}
    return run_tasks([task], servers=cluster.url, args=LAB)


def test_a_long_window_sends_an_update_between_stretches_and_keeps_every_status_line(cluster, tmp_path):
    with Receiver() as hook:
        res = soak(cluster, tmp_path, hook.url, 5, 2)
        assert res.rc == 0, res.stdout[-3000:]
        texts = hook.texts()
    updates = [t for t in texts if "🔄 In Progress" in t]
    assert [t.splitlines()[0] for t in updates] == ["[UPDATE] Migration Phase 0/3 - 🔄 In Progress"] * 2, texts
    assert "Soak window: 2 of 5 s watched, no migration alert firing; next update in 2 s" in " ".join(
        updates[0].split())
    assert "4 of 5 s watched" in " ".join(updates[1].split())
    assert texts[-1].startswith("[UPDATE] Migration Phase 0/3 - ✅ Complete"), texts
    stretches = [t for t in res.tasks if "Soak window - " in t["_name"]]
    assert [t["_name"].split("Soak window - ")[1].split(",")[0] for t in stretches] == [
        "2 s (1 of 3)", "2 s (2 of 3)", "1 s (3 of 3)"]
    shown = next(t for t in res.tasks if "Soak status, one line per poll" in t["_name"])["msg"]
    assert len(shown) == sum(len(t["lines"]) for t in stretches)  # every stretch's lines, once


def test_a_window_within_the_interval_is_one_stretch_without_updates(cluster, tmp_path):
    with Receiver() as hook:
        res = soak(cluster, tmp_path, hook.url, 2, 0)
        assert res.rc == 0, res.stdout[-3000:]
        texts = hook.texts()
    assert not [t for t in texts if "In Progress" in t] and len(texts) == 1, texts  # only phase 0's Complete
