"""The commands' renderers against the transcripts of gflow 0.4.13 (spec/cli.md).

Expected texts are copied from the spec (captured from the real 0.4.13 binaries). Where a
transcript contains the tmux session mark `○`, which we never print (no tmux), rows are
compared cell by cell after removing it, because the mark also widens the NAME column.
"""

from __future__ import annotations

import argparse
import re

from gflow.cli import gctl, ginfo, gqueue, gstats, render

NOW = 1795495200.0  # 2026-11-24 04:40:00 UTC
ESC = "\x1b"


def job(id, *, state="Queued", name=None, gpus=0, depends_on=None, deps=None, redone_from=None,
        reason=None, started=None, finished=None, gpu_ids=None, user="alice", **extra):
    j = {"id": id, "run_name": name or f"gflow-job-{id}", "state": state, "gpus": gpus,
         "depends_on": depends_on,
         "depends_on_ids": deps if deps is not None else ([depends_on] if depends_on else []),
         "redone_from": redone_from, "reason": reason, "submitted_by": user,
         "started_at": None if started is None else {"secs_since_epoch": int(started),
                                                     "nanos_since_epoch": 0},
         "finished_at": None if finished is None else {"secs_since_epoch": int(finished),
                                                       "nanos_since_epoch": 0},
         "gpu_ids": gpu_ids, "time_limit": None, "memory_limit_mb": None, "project": None,
         "submitted_at": {"secs_since_epoch": int(NOW) - 100, "nanos_since_epoch": 0}}
    j.update(extra)
    return j


def args(**kw):
    base = dict(output="table", sort="id", limit=0, all=True, format=gqueue.DEFAULT_FORMAT,
                group=False, tree=False)
    base.update(kw)
    return argparse.Namespace(**base)


def cells(text: str) -> list[list[str]]:
    """Table lines as cells: colour and `○` removed, split at the 3-space separators."""
    out = []
    for line in text.splitlines():
        line = render.strip_ansi(line).replace(" ○", "").rstrip("$").strip()
        out.append(re.split(r" {3,}", line) if line else [])
    return out


def spec_block(text: str) -> str:
    """A transcript as printed: `$` end markers and the leading `$ command` line removed."""
    lines = [ln[:-1] if ln.endswith("$") else ln for ln in text.splitlines()
             if not ln.startswith("$ ")]
    return "\n".join(lines)


# --- gqueue ----------------------------------------------------------------------------------

TREE_CASCADE = """\
$ gqueue -a -t -j 20,21,22,23,24,25,26,27
 JOBID      NAME             ST   TIME       NODES   NODELIST(REASON)      $
 20         parent ○         CA   00:00:01   0       -                     $
 ├─21       child1           CA   -          0       (DependencyFailed:20) $
 │ ├─23     gchild           CA   -          0       (DependencyFailed:21) $
 │ │ ╰┄27   gflow-job-27     PD   -          0       (Dependency)          $
 │ ╰┄25     gflow-job-25     PD   -          0       (Dependency)          $
 ╰┄24       gflow-job-24 ○   R    00:00:01   0                             $
 22         child2           CA   -          0       (DependencyFailed:20) $
 ╰┄26       gflow-job-26     PD   -          0       (Dependency)          $
"""

TREE_REFERENCE = """\
$ gqueue -a -t -j 2,3,4,49
 JOBID            NAME             ST   TIME       NODES   NODELIST(REASON) $
 2                gflow-job-2      CD   00:00:01   0       -                $
 ╰─49             gflow-job-49 ○   F    00:00:01   1       -                $
 3                gflow-job-3      CA   00:00:08   0       -                $
 4                gflow-job-4      F    00:00:01   0       -                $
 ╰┄→ see job 49   -                -    -          -       -                $
"""


def cascade_jobs():
    """The jobs behind TREE_CASCADE as 0.4.13 stored them (its cascade clones carry only
    `depends_on_ids`, no legacy `depends_on`)."""
    return [
        job(20, state="Cancelled", name="parent", reason="CancelledByUser",
            started=NOW - 10, finished=NOW - 9),
        job(21, state="Cancelled", name="child1", depends_on=20,
            reason={"DependencyFailed": 20}),
        job(22, state="Cancelled", name="child2", deps=[20, 21],
            reason={"DependencyFailed": 20}, dependency_mode="Any"),
        job(23, state="Cancelled", name="gchild", depends_on=21,
            reason={"DependencyFailed": 21}),
        job(24, state="Running", redone_from=20, started=NOW - 1, gpu_ids=[]),
        job(25, redone_from=21, deps=[24]),
        job(26, redone_from=22, deps=[24, 25]),
        job(27, redone_from=23, deps=[25]),
    ]


def test_tree_with_redo_cascade_matches_0413():
    text = gqueue.output(cascade_jobs(), args(tree=True), colour=False, now=NOW)
    assert cells(text) == cells(spec_block(TREE_CASCADE))


def test_tree_reference_row_matches_0413():
    jobs = [job(2, state="Finished", started=NOW - 5, finished=NOW - 4, gpu_ids=[]),
            job(3, state="Cancelled", started=NOW - 10, finished=NOW - 2, gpu_ids=[],
                reason="CancelledByUser"),
            job(4, state="Failed", started=NOW - 5, finished=NOW - 4, gpu_ids=[]),
            job(49, state="Failed", gpus=1, depends_on=2, redone_from=4, started=NOW - 3,
                finished=NOW - 2, gpu_ids=[0])]
    text = gqueue.output(jobs, args(tree=True), colour=False, now=NOW)
    assert cells(text) == cells(spec_block(TREE_REFERENCE))
    # without the ○ mark nothing widens NAME: the exact layout
    assert text.splitlines()[5] == " ╰┄→ see job 49   -              -    -          -       -" \
                                   "                "


def test_tree_prefix_only_on_first_column_and_cycles_never_lose_jobs():
    jobs = [job(1, depends_on=2), job(2, depends_on=1), job(3, depends_on=1)]
    text = gqueue.output(jobs, args(tree=True), colour=False, now=NOW)
    ids = [re.sub(r"[^0-9]", "", c[0]) for c in cells(text)[1:]]
    assert sorted(ids) == ["1", "2", "3"]
    text = gqueue.output(jobs, args(tree=True, format="NAME,JOBID"), colour=False, now=NOW)
    assert "─" not in text


def test_table_with_colour_matches_0413_bytes():
    jobs = [job(25, state="Hold", gpus=2, reason=None),
            job(30, name="g2b", gpus=2)]
    text = gqueue.output(jobs, args(), colour=True, now=NOW)
    expected = (
        " JOBID   NAME           ST   TIME   NODES   NODELIST(REASON) \n"
        " 25      gflow-job-25   \x1b[1mH\x1b[0m    -      2       (JobHeldUser)    \n"
        " 30      g2b            \x1b[3mPD\x1b[0m   -      2       (Resources)      ")
    assert text == expected


def test_state_styles_are_0413_bytes():
    assert render.styled_state("Running", True) == "\x1b[1m\x1b[32mR\x1b[39m\x1b[0m"
    assert render.styled_state("Failed", True) == "\x1b[1m\x1b[31mF\x1b[39m\x1b[0m"
    assert render.styled_state("Cancelled", True) == "\x1b[9mCA\x1b[0m"
    assert render.styled_state("Timeout", True) == "\x1b[4mTO\x1b[0m"
    assert render.styled_state("Finished", True) == "\x1b[2mCD\x1b[0m"
    assert render.styled_state("Finished", False) == "CD"


def test_custom_format_with_unknown_column():
    expected = """\
 JOBID   USER      NAME            TIMELIMIT   MEMORY   PROJECT   FOO   ST $
 1       unknown   gflow-job-1 ○   UNLIMITED   -        -               CA $
 2       alice     gflow-job-2 ○   UNLIMITED   -        -               CD $
"""
    jobs = [job(1, state="Cancelled", user="unknown"), job(2, state="Finished")]
    text = gqueue.output(jobs, args(format="JOBID,USER,NAME,TIMELIMIT,MEMORY,PROJECT,FOO,ST"),
                         colour=False, now=NOW)
    assert cells(text) == cells(spec_block(expected))
    limited = job(3, time_limit={"secs": 5, "nanos": 0}, memory_limit_mb=2560, project="p")
    row = gqueue.output([limited], args(format="TIMELIMIT,MEMORY,PROJECT"), False, now=NOW)
    assert cells(row)[1] == ["00:00:05", "2.5G", "p"]


def test_group_shows_held_jobs_and_limit_applies_with_all():
    jobs = [job(1, state="Hold"), job(2, state="Running", started=NOW - 1, gpu_ids=[]),
            job(3)]
    text = gqueue.output(jobs, args(group=True, format="JOBID,NAME,ST"), False, now=NOW)
    titles = [ln for ln in text.splitlines() if re.match(r"^[A-Z][a-z]+ \(\d+\)$", ln)]
    assert titles == ["Running (1)", "Queued (1)", "Hold (1)"]  # 0.4.13 dropped Hold
    assert text.splitlines()[1] == "─" * 60
    text = gqueue.output(jobs, args(limit=2), False, now=NOW)
    assert text.startswith("Showing first 2 of 3 jobs (use -n 0 to show all)\n\n")
    text = gqueue.output(jobs, args(limit=-1, all=False), False, now=NOW)
    assert text.startswith("Showing last 1 of 3 jobs (use --all or -n 0 to show all)\n\n")
    assert cells(text)[-1][0] == "3"


def test_sort_fields():
    jobs = [job(1, state="Running", started=NOW - 5, priority=5, gpus=2, name="b"),
            job(2, priority=20, gpus=1, name="a"), job(3, state="Hold", priority=1, name="c")]
    order = lambda key: [j["id"] for j in gqueue.sort_jobs(jobs, key)]  # noqa: E731
    assert order("state") == [2, 3, 1]
    assert order("TIME") == [2, 3, 1]
    assert order("name") == [2, 1, 3]
    assert order("nodes") == [3, 2, 1]
    assert order("priority") == [3, 1, 2]


def test_json_matches_0413_layout():
    expected = """{
  "jobs": [
    {
      "id": 5,
      "name": "gflow-job-5",
      "state": "Finished",
      "time": "00:00:01",
      "gpus": [
        0
      ],
      "user": "alice",
      "submitted_at": "2026-11-24T04:38:20Z",
      "memory_mb": 2048,
      "time_limit": "00:00:10"
    },
    {
      "id": 21,
      "name": "child1",
      "state": "Queued",
      "time": "-",
      "gpus": [],
      "user": "alice",
      "submitted_at": "2026-11-24T04:38:20Z",
      "reason": "Dependency"
    }
  ],
  "total": 2,
  "timestamp": "2026-11-24T04:40:00.000000000+00:00"
}"""
    jobs = [job(5, state="Finished", started=NOW - 3, finished=NOW - 2, gpu_ids=[0],
                memory_limit_mb=2048, time_limit={"secs": 10, "nanos": 0}),
            job(21, name="child1", depends_on=20)]
    assert gqueue.output(jobs, args(output="json"), False, now=NOW) == expected


def test_json_carries_our_exit_code_and_reason_detail():
    import json
    j = job(7, state="Failed", started=NOW - 2, finished=NOW - 1, exit_code=3,
            reason_detail="exit code 3")
    doc = json.loads(gqueue.output([j], args(output="json"), False, now=NOW))
    assert doc["jobs"][0]["exit_code"] == 3
    assert doc["jobs"][0]["reason_detail"] == "exit code 3"


def test_csv_and_yaml_match_0413():
    jobs = [job(20, name="parent", state="Cancelled", reason="CancelledByUser",
                started=NOW - 7, finished=NOW - 1, gpu_ids=[]),
            job(21, name="child1", state="Cancelled", reason={"DependencyFailed": 20},
                depends_on=20)]
    assert gqueue.output(jobs, args(output="CSV"), False, now=NOW) == (
        "id,name,state,time,gpus,user,submitted_at,reason\n"
        "20,parent,Cancelled,00:00:06,[],alice,2026-11-24T04:38:20Z,-\n"
        "21,child1,Cancelled,-,[],alice,2026-11-24T04:38:20Z,DependencyFailed:20")
    tl = job(32, name="tlimit", state="Timeout", started=NOW - 13, finished=NOW,
             gpu_ids=[], time_limit={"secs": 5, "nanos": 0})
    assert gqueue.output([tl], args(output="yaml"), False, now=NOW) == (
        "jobs:\n- id: 32\n  name: tlimit\n  state: Timeout\n  time: 00:00:13\n  gpus: []\n"
        "  user: alice\n  submitted_at: 2026-11-24T04:38:20Z\n  time_limit: 00:00:05\n"
        "total: 1\ntimestamp: 2026-11-24T04:40:00.000000000+00:00\n")
    assert gqueue.yaml_scalar("-") == "'-'"
    assert gqueue.yaml_scalar("it's: x") == "'it''s: x'"
    assert gqueue.yaml_scalar("123") == "'123'"


def test_empty_machine_output_is_a_document():
    assert gqueue.output([], args(output="csv"), False, now=NOW) == \
        "id,name,state,time,gpus,user,submitted_at,reason"
    assert gqueue.output([], args(output="yaml"), False, now=NOW).startswith("jobs: []\n")
    assert gqueue.output([], args(), False, now=NOW) == "No jobs found."


def test_reason_display_rules():
    assert render.nodelist_cell(job(1, state="Cancelled", reason="CancelledByUser")) == "-"
    assert render.nodelist_cell(job(1, state="Cancelled")) == "-"
    assert render.nodelist_cell(job(1, depends_on=3)) == "(Dependency)"
    assert render.nodelist_cell(job(1, reason={"SystemError": "boom"})) == "(SystemError:boom)"
    assert render.nodelist_cell(job(1, state="Running", gpu_ids=[0, 1])) == "0,1"
    assert render.nodelist_cell(job(1, state="Finished")) == "-"
    assert render.format_memory(2560) == "2.5G" and render.format_memory(1000) == "1000M"
    assert render.hms(90000) == "25:00:00"


# --- ginfo -------------------------------------------------------------------------------------

def test_ginfo_rows_match_0413():
    idle = {"gpus": [{"index": i, "uuid": f"u{i}", "available": True} for i in range(4)]}
    assert render.table(ginfo.rows_for(idle, []), sep="  ") == spec_block(
        " PARTITION  GPUS  NODES    STATE  JOB(REASON) $\n"
        " gpu        4     0,1,2,3  idle               $")
    busy = {"gpus": [{"index": 0, "available": False}, {"index": 1, "available": False},
                     {"index": 2, "available": True},
                     {"index": 3, "available": False, "reason": "Unmanaged"}]}
    jobs = [job(48, state="Running", name="busytest", gpus=2, gpu_ids=[0, 1])]
    assert render.table(ginfo.rows_for(busy, jobs), sep="  ") == spec_block(
        " PARTITION  GPUS  NODES  STATE      JOB(REASON)   $\n"
        " gpu        1     2      idle                     $\n"
        " gpu        2     0,1    allocated  48 (busytest) $\n"
        " gpu        1     3      allocated  (Unmanaged)   $")


# --- gstats ------------------------------------------------------------------------------------

STATS = {"user": "alice", "since": None, "total_jobs": 30, "completed_jobs": 16,
         "failed_jobs": 3, "cancelled_jobs": 5, "timeout_jobs": 0, "running_jobs": 2,
         "queued_jobs": 3, "avg_wait_secs": 0.17529426269565218,
         "avg_runtime_secs": 2.3625833115789474, "total_gpu_hours": 0.032005220424722224,
         "jobs_with_gpus": 6, "avg_gpus_per_job": 0.3, "peak_gpu_usage": 2,
         "success_rate": 66.66666666666666,
         "top_jobs": [{"id": 28, "name": "g2", "runtime_secs": 37.723484832, "gpus": 2},
                      {"id": 29, "name": "g1", "runtime_secs": 37.7, "gpus": 1}]}

GSTATS_TABLE = r"""\e[1mUsage Statistics\e[0m  \e[2muser: alice\e[0m  \e[2msince: all time\e[0m  \e[2mactive: 5\e[0m
\e[2m────────────────────────────────────────────────────────────────────────\e[0m

\e[1mJob Status\e[0m
  \e[2mTotal Jobs:     \e[0m \e[1m30\e[0m
  \e[2mCompleted:      \e[0m \e[1m16\e[0m (67%)
  \e[2mFailed:         \e[0m \e[1m3\e[0m (12%)
  \e[2mCancelled:      \e[0m \e[1m5\e[0m (21%)
  \e[2mRunning:        \e[0m \e[1m2\e[0m (7%)
  \e[2mQueued:         \e[0m \e[1m3\e[0m (10%)

\e[1mEfficiency\e[0m
  \e[2mAvg Wait Time:  \e[0m 00:00:00
  \e[2mAvg Runtime:    \e[0m 00:00:02
  \e[2mTotal GPU-Hours:\e[0m 0.0h
  \e[2mSuccess Rate:   \e[0m \e[1m66.7%\e[0m

\e[1mGPU Usage\e[0m
  \e[2mJobs with GPUs: \e[0m \e[1m6\e[0m (20%)
  \e[2mAvg GPUs/Job:   \e[0m 0.3
  \e[2mPeak GPU Usage: \e[0m 2

\e[1mTop Jobs by Runtime\e[0m
  \e[1m#  \e[0m \e[1m JOBID\e[0m  \e[1mNAME                              \e[0m  \e[1m RUNTIME\e[0m  \e[1mGPUS\e[0m
  \e[2m──────────────────────────────────────────────────────────────\e[0m
  \e[1m1. \e[0m \e[1m    28\e[0m  g2                                  \e[1m00:00:37\e[0m  \e[1m   2\e[0m
  \e[1m2. \e[0m \e[1m    29\e[0m  g1                                  \e[1m00:00:37\e[0m  \e[1m   1\e[0m"""


def test_gstats_table_matches_0413_bytes():
    assert gstats.render_table(STATS, colour=True) == GSTATS_TABLE.replace(r"\e", ESC)
    plain = gstats.render_table(STATS, colour=False)
    assert ESC not in plain and "  Completed:       16 (67%)" in plain


def test_gstats_csv_and_json_match_0413():
    assert gstats.render_csv(STATS) == (
        "metric,value\ntotal_jobs,30\ncompleted_jobs,16\nfailed_jobs,3\ncancelled_jobs,5\n"
        "timeout_jobs,0\nrunning_jobs,2\nqueued_jobs,3\navg_wait_secs,0.2\n"
        "avg_runtime_secs,2.4\ntotal_gpu_hours,0.03\njobs_with_gpus,6\n"
        "avg_gpus_per_job,0.30\npeak_gpu_usage,2\nsuccess_rate,66.7")
    text = gstats.render_json(STATS)
    assert text.startswith('{\n  "user": "alice",\n  "since": null,\n  "total_jobs": 30,')
    assert '"success_rate": 66.66666666666666,' in text


def test_gstats_empty_selection_shows_plain_zero():
    empty = {"user": "nobody", "since": None, "total_jobs": 0, "completed_jobs": 0,
             "failed_jobs": 0, "cancelled_jobs": 0, "timeout_jobs": 0, "running_jobs": 0,
             "queued_jobs": 0, "held_jobs": 0, "avg_wait_secs": None,
             "avg_runtime_secs": None, "total_gpu_hours": -0.0, "jobs_with_gpus": 0,
             "avg_gpus_per_job": 0.0, "peak_gpu_usage": 0, "success_rate": 0.0,
             "top_jobs": []}
    text = gstats.render_table(empty, colour=False)
    assert "Total GPU-Hours: 0.0h" in text and "-0.0" not in text  # §15.12 fix
    assert "  Avg Wait Time:   -" in text and "Top Jobs" not in text
    assert "  Completed:       0\n" in text
    assert "total_gpu_hours,0.00" in gstats.render_csv(empty)
    assert '"total_gpu_hours": 0.0' in gstats.render_json(empty)
    held = dict(empty, total_jobs=2, held_jobs=1, queued_jobs=1)
    assert "  Held:            1 (50%)" in gstats.render_table(held, colour=False)


# --- gctl reserve ------------------------------------------------------------------------------

TIMELINE = ('\nGPU Reservations Timeline (2026-11-24 06:06:01 UTC)\n'
            '════════════════════════════════════════════════════════════════════════════════\n'
            '┬───────────┬────────────┬───────────┬─────┃─────┬───────────┬────────────┬─────\n'
            '11/23 16:00 20:00        11/24 00:00 04:00Now    08:00       12:00        16:00 \n'
            '\nalice (GPU: 2 GPUs)                               ░░░░░░                            \n'
            '  └─ Pending (07:00→09:00)\n'
            'bob (GPU: GPU[2,3])                                       ░░░░                      \n'
            '  └─ Pending (09:30→11:00)\n\n'
            '────────────────────────────────────────────────────────────────────────────────\n'
            'Summary: 0 active, 2 pending | 0 GPUs currently reserved\n\n'
            'Legend: █ Active  ░ Pending')

T0 = 1795495200  # 2026-11-24 04:40:00 UTC


def reservation(id, user, spec, start, hours, status="Pending"):
    return {"id": id, "user": user, "gpu_spec": spec,
            "start_time": {"secs_since_epoch": start, "nanos_since_epoch": 0},
            "duration": {"secs": int(hours * 3600), "nanos": 0}, "status": status,
            "created_at": {"secs_since_epoch": T0, "nanos_since_epoch": 0},
            "cancelled_at": None}


def test_timeline_matches_0413():
    seven = T0 + 8400  # 07:00 UTC
    rs = [reservation(1, "alice", {"count": 2}, seven, 2),
          reservation(2, "bob", {"indices": [2, 3]}, seven + 9000, 1.5)]
    now = T0 + 5161  # 06:06:01
    zone = gctl.Zone("UTC")
    assert gctl.timeline(rs, zone, now - 12 * 3600, now + 12 * 3600, now) == TIMELINE


def test_timeline_ranges_and_fills():
    now = float(T0)
    assert gctl.parse_range("48h", now) == (now, now + 48 * 3600)
    assert gctl.parse_range("-24h", now) == (now - 24 * 3600, now)
    assert gctl.parse_range("-24h:+24h", now) == (now - 24 * 3600, now + 24 * 3600)
    rs = [reservation(1, "a", {"count": 1}, T0 - 3600, 2, "Active"),
          reservation(2, "b", {"count": 1}, T0 + 3600, 1, "Cancelled")]
    text = gctl.timeline(rs, gctl.Zone("UTC"), now - 6 * 3600, now + 6 * 3600, now)
    assert "█" in text.splitlines()[6] and "▒" in text.splitlines()[8]
    assert "Summary: 1 active, 0 pending | 1 GPUs currently reserved" in text


def test_reservation_time_parsing():
    utc = gctl.Zone("UTC")
    assert utc.parse("2030-01-01 10:30") == 1893493800
    assert utc.parse("2030-01-01T10:00:00Z") == 1893492000
    assert utc.parse("2030-01-01T12:00:00+02:00") == 1893492000
    berlin = gctl.Zone("Europe/Berlin")
    assert berlin.parse("2030-01-01 11:00") == 1893492000
    for bad, words in (("tomorrow", "Invalid time format: tomorrow"),
                       ("2030-01-01 10:15", "on the hour (:00) or half-hour (:30)"),
                       ("2030-01-01T10:00:30Z", "must not include seconds"),
                       ("2030-03-31 02:30", "Ambiguous or invalid time")):
        try:
            berlin.parse(bad)
        except gctl.CommandError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(bad)
    assert gctl.compact_duration(5400) == "1h 30m" and gctl.compact_duration(45) == "45s"
    assert gctl.compact_duration(7200) == "2h" and gctl.compact_duration(1800) == "30m"


def test_reserve_list_table_matches_0413():
    rows = [["ID", "USER", "GPUS", "START", "END", "STATUS"],
            ["1", "alice", "2", "2026-11-24 07:00:00", "2026-11-24 09:00:00", "Pending"],
            ["2", "bob", "2,3", "2026-11-24 09:30:00", "2026-11-24 11:00:00", "Cancelled"]]
    assert render.table(rows) == spec_block(
        " ID   USER    GPUS   START                 END                   STATUS    $\n"
        " 1    alice   2      2026-11-24 07:00:00   2026-11-24 09:00:00   Pending   $\n"
        " 2    bob     2,3    2026-11-24 09:30:00   2026-11-24 11:00:00   Cancelled $")


def test_display_width_of_wide_and_styled_cells():
    assert render.display_width("\x1b[1mH\x1b[0m") == 1
    assert render.display_width("日本") == 4
    assert render.table([["日本", "x"], ["a", "y"]]) == " 日本   x \n a      y "
