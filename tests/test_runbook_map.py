"""docs/RUNBOOK_MAP.md covers the runbook: every checklist line and every "Verify"/"Expected" line has one entry, none
is "missing", every "asserted" entry names tasks that exist in the named files, every human item is printed by
reminders.yml, and the README's counts are the map's. Fast: parses files only, no lab.

The runbook is read from ../shared/runbook (the team's copy) when it exists, else from the pinned copy in
docs/runbook/; when both exist they must be identical, so a runbook change shows up here first."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PINNED = REPO / "docs" / "runbook" / "PHASE2_MIGRATION_RUNBOOK.md"
SHARED = REPO.parent / "shared" / "runbook" / "PHASE2_MIGRATION_RUNBOOK.md"
MAP = REPO / "docs" / "RUNBOOK_MAP.md"
REMINDERS = REPO / "roles" / "migration" / "tasks" / "reminders.yml"
KINDS = ("asserted", "replaced", "human")
TASK_REF = re.compile(r"`((?:roles|playbooks)/[^`]+\.yml)` › `([^`]+)`")


# Expectations the runbook writes as shell comments without the words Verify/Expected ("# Should show ...",
# "# Must be: messages: 0", "# Daily check: verify ..."): each is a checklist line too.
EXPECTATION = re.compile(r"^# .*(\bverify\b|\bMust be\b|\b[Ss]hould (remain|show|NOT show)\b|\bDaily check\b)")


def runbook_items(text):
    """``[(id, line)]``: checkbox lines, lines with the word Verify or Expected and the expectations above, numbered ``<section>#<n>``; the
    section is the step number of a "### Step X.Y" heading, else the heading up to its colon (the whole heading when
    that is not unique, e.g. the troubleshooting "Issue: ..." headings)."""
    out, key, n, seen = [], None, 0, set()
    for line in text.splitlines():
        heading = re.match(r"^#{2,4} (.*)", line)
        if heading:
            title = heading.group(1).strip()
            step = re.match(r"Step (\d+\.\d+)", title)
            key = step.group(1) if step else _slug(re.split(r"[:(]", title)[0])
            if key in seen:
                key = _slug(title.split("(")[0])
            seen.add(key)
            n = 0
            if not re.search(r"\b(Verify|Expected)\b", title):
                continue
        stripped = line.strip()
        if stripped.startswith("- [ ]") or re.search(r"\b(Verify|Expected)\b", stripped) or EXPECTATION.search(stripped):
            n += 1
            out.append(("%s#%d" % (key, n), stripped))
    return out


def _slug(text):
    return re.sub(r"[^A-Za-z0-9.]+", "-", text.strip()).strip("-")


def map_rows(text):
    """``{id: (line, kind, where)}`` from the map's table rows (``| id | runbook line | kind | where |``)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")] if line.startswith("| ") else []
        if len(cells) != 4 or "#" not in cells[0] or cells[0].startswith("-"):
            continue
        ident = cells[0].strip("`")
        assert ident not in rows, "docs/RUNBOOK_MAP.md: %s is mapped twice" % ident
        rows[ident] = (cells[1], cells[2], cells[3])
    return rows


def task_names(path):
    names = set()

    def walk(tasks):
        for task in tasks or []:
            if isinstance(task, dict):
                if task.get("name"):
                    names.add(task["name"])
                for key in ("block", "rescue", "always", "tasks"):
                    walk(task.get(key))

    walk(yaml.safe_load(path.read_text()))
    return names


def kind_of(cell):
    if cell == "asserted":
        return "asserted"
    if re.match(r"^replaced by .+ because .+", cell):
        return "replaced"
    if re.match(r"^human item, shown as a reminder \((\w+|\d)\)$", cell):
        return "human"
    return None


@pytest.fixture(scope="module")
def runbook():
    text = (SHARED if SHARED.exists() else PINNED).read_text()
    return text


@pytest.fixture(scope="module")
def rows():
    return map_rows(MAP.read_text())


def test_pinned_copy_is_the_team_runbook():
    if SHARED.exists():
        assert PINNED.read_text() == SHARED.read_text(), (
            "the runbook changed: copy %s to docs/runbook/ and update docs/RUNBOOK_MAP.md" % SHARED)
    assert PINNED.exists()


def test_every_runbook_line_has_one_entry_and_no_other(runbook, rows):
    items = runbook_items(runbook)
    checkboxes = [i for i, line in items if line.startswith("- [ ]")]
    assert len(checkboxes) == 43, "the runbook has 43 checklist lines, parsed %d" % len(checkboxes)
    missing = ["%s (%s)" % (i, line) for i, line in items if i not in rows]
    assert not missing, "docs/RUNBOOK_MAP.md has no entry for: %s" % "; ".join(missing)
    stale = sorted(set(rows) - {item[0] for item in items})
    assert not stale, "docs/RUNBOOK_MAP.md maps lines the runbook does not have: %s" % stale
    for ident, line in items:
        assert rows[ident][0] == line, "%s: map quotes %r, the runbook says %r" % (ident, rows[ident][0], line)


def test_every_entry_is_asserted_replaced_or_human(rows):
    for ident, (_line, kind, where) in rows.items():
        assert "missing" not in (kind + where).lower(), "%s is marked missing" % ident
        assert kind_of(kind), "%s: kind %r is none of: asserted / replaced by X because Y / human item, shown as a " \
                              "reminder (<key>)" % (ident, kind)


def test_asserted_and_replaced_entries_name_tasks_that_exist(rows):
    cache = {}
    for ident, (_line, kind, where) in rows.items():
        if kind_of(kind) == "human":
            continue
        refs = TASK_REF.findall(where)
        assert refs, "%s (%s) names no task as `file` › `task name`: %r" % (ident, kind, where)
        for path, name in refs:
            file_ = REPO / path
            assert file_.exists(), "%s: %s does not exist" % (ident, path)
            names = cache.setdefault(path, task_names(file_))
            assert name in names, "%s: no task named %r in %s" % (ident, name, path)


def test_human_items_are_printed_as_reminders(rows):
    reminders = yaml.safe_load(REMINDERS.read_text())[0]["vars"]["migration_reminders"]
    for ident, (_line, kind, _where) in rows.items():
        if kind_of(kind) == "human":
            key = re.search(r"\((\w+)\)$", kind).group(1)
            assert reminders.get(key), "%s: reminders.yml prints nothing for %r" % (ident, key)


def test_readme_has_the_counts(rows):
    counts = Counter(kind_of(kind) for _line, kind, _where in rows.values())
    line = "asserted %d / replaced %d / human %d" % tuple(counts[k] for k in KINDS)
    for doc in (REPO / "README.md", MAP):
        assert line in doc.read_text(), "%s should say: %s" % (doc.name, line)
