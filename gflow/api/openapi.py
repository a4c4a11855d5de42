"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json and checked by a test."""

from __future__ import annotations

from gflow import __version__

_time = {"type": "object", "required": ["secs_since_epoch", "nanos_since_epoch"],
         "properties": {"secs_since_epoch": {"type": "integer", "minimum": 0},
                        "nanos_since_epoch": {"type": "integer", "minimum": 0}}}
_duration = {"type": "object", "required": ["secs", "nanos"],
             "properties": {"secs": {"type": "integer", "minimum": 0},
                            "nanos": {"type": "integer", "minimum": 0}}}
_opt = lambda schema: {"oneOf": [schema, {"type": "null"}]}  # noqa: E731
_u32 = {"type": "integer", "minimum": 0, "maximum": 4294967295}
_states = ["Queued", "Hold", "Running", "Finished", "Failed", "Cancelled", "Timeout"]

JOB = {
    "type": "object",
    "description": "gflow 0.4.13's Job (all 30 keys, in this order) plus our extra keys.",
    "properties": {
        "id": _u32, "script": _opt({"type": "string"}), "command": _opt({"type": "string"}),
        "gpus": _u32, "conda_env": _opt({"type": "string"}), "run_dir": {"type": "string"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 255},
        "depends_on": _opt(_u32), "depends_on_ids": {"type": "array", "items": _u32},
        "dependency_mode": _opt({"enum": ["All", "Any"]}),
        "auto_cancel_on_dependency_failure": {"type": "boolean"}, "task_id": _opt(_u32),
        "gpu_sharing_mode": {"enum": ["Exclusive", "Shared"]},
        "gpu_memory_limit_mb": _opt({"type": "integer", "minimum": 0}),
        "time_limit": _opt(_duration),
        "memory_limit_mb": _opt({"type": "integer", "minimum": 0}),
        "submitted_by": {"type": "string"}, "redone_from": _opt(_u32),
        "auto_close_tmux": {"type": "boolean"},
        "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
        "group_id": _opt({"type": "string", "format": "uuid"}),
        "max_concurrent": _opt({"type": "integer", "minimum": 0}),
        "run_name": _opt({"type": "string"}), "project": _opt({"type": "string"}),
        "state": {"enum": _states}, "gpu_ids": _opt({"type": "array", "items": _u32}),
        "submitted_at": _opt(_time), "started_at": _opt(_time), "finished_at": _opt(_time),
        "reason": _opt({"oneOf": [
            {"enum": ["CancelledByUser", "JobHeldUser", "WaitingForDependency",
                      "WaitingForResources"]},
            {"type": "object", "properties": {"DependencyFailed": _u32}},
            {"type": "object", "properties": {"SystemError": {"type": "string"}}}]}),
        "exit_code": _opt({"type": "integer"}), "reason_detail": _opt({"type": "string"}),
        # issue 17: begin time, retries and their attempts, Slurm-style dependency
        # conditions, suspension, the waiting reason gqueue names (BeginTime, Quota)
        "scheduled_at": _opt(_time), "max_retries": _opt({"type": "integer", "minimum": 0}),
        "attempts": {"type": "array", "items": {"type": "object"}},
        "dependency_conditions": {"type": "object", "additionalProperties": {
            "enum": ["afterok", "afterany", "afternotok"]}},
        "suspended_at": _opt(_time), "pending_reason": _opt({"type": "string"}),
        "executor_id": _opt({"type": "string"}),
        "env": _opt({"type": "object", "additionalProperties": {"type": "string"}}),
    },
}
RESERVATION = {
    "type": "object",
    "required": ["id", "user", "gpu_spec", "start_time", "duration", "status", "created_at"],
    "properties": {
        "id": _u32, "user": {"type": "string"},
        "gpu_spec": {"oneOf": [
            {"type": "object", "required": ["count"], "properties": {"count": _u32}},
            {"type": "object", "required": ["indices"],
             "properties": {"indices": {"type": "array", "items": _u32}}}]},
        "start_time": _time, "duration": _duration,
        "status": {"enum": ["Pending", "Active", "Completed", "Cancelled"]},
        "created_at": _time, "cancelled_at": _opt(_time),
    },
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _json(schema, description="OK"):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description):
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _err(description):
    return _json({"$ref": "#/components/schemas/Error"}, description)


_job_ref = {"$ref": "#/components/schemas/Job"}
_job_id = {"name": "id", "in": "path", "required": True, "schema": _u32}
_res_id = {"name": "id", "in": "path", "required": True, "schema": _u32}
_pid = {"name": "id", "in": "path", "required": True, "schema": _u32,
        "description": "the process id"}


def _q(name, schema, description=""):
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _transition(action, text):
    return {"post": {"summary": text, "parameters": [_job_id], "responses": {
        "200": _json({"type": "null"}), "404": _json({"type": "null"}, "No such job"),
        "409": _err("Illegal transition for the job's state"),
        "503": _err("Read-only mode or scheduler unavailable")}}}


PATHS = {
    "/": {"get": {"summary": "Greeting", "responses": {"200": _text("Hello, World!")}}},
    "/health": {"get": {"summary": "Liveness and persistence mode", "responses": {
        "200": _json({"type": "object", "required": ["status", "pid"]}),
        "503": _json({"type": "object"}, "Read-only mode")}}},
    "/openapi.json": {"get": {"summary": "This document",
                              "responses": {"200": _json({"type": "object"})}}},
    "/info": {"get": {"summary": "GPUs and the allocation policy", "responses": {
        "200": _json({"type": "object",
                      "required": ["gpus", "gpu_allocation_strategy"]})}}},
    "/jobs": {
        "get": {"summary": "List jobs (ascending id)", "parameters": [
            _q("state", {"type": "string"}, "comma list; long or short names"),
            _q("user", {"type": "string"}, "comma list"),
            _q("limit", {"type": "integer", "minimum": 0}),
            _q("offset", {"type": "integer", "minimum": 0}),
            _q("created_after", {"type": "integer"}, "unix seconds, >= submitted_at")],
            "responses": {"200": _json({"type": "array", "items": _job_ref}),
                          "400": _text("Bad query value")}},
        "post": {"summary": "Submit one job", "requestBody": {
            "required": True, "content": {"application/json": {"schema": _job_ref}}},
            "responses": {"201": _json({"type": "object", "required": ["id", "run_name"]}),
                          "400": _err("Invalid job"), "413": _err("Body too large"),
                          "503": _err("Not accepting changes")}},
    },
    "/jobs/batch": {"post": {"summary": "Submit 1..1000 jobs, all or nothing", "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "array", "items": _job_ref}}}},
        "responses": {"201": _json({"type": "array"}), "400": _err("Invalid batch"),
                      "413": _err("More than 1000 jobs"), "503": _err("Not accepting changes")}}},
    "/jobs/resolve-dependency": {"get": {"summary": "`@` / `@~N` to a job id", "parameters": [
        {"name": "username", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "shorthand", "in": "query", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": _json({"type": "object", "required": ["job_id"]}),
                      "400": _err("Cannot resolve")}}},
    "/jobs/{id}": {
        "get": {"summary": "One job", "parameters": [_job_id], "responses": {
            "200": _json(_job_ref), "404": {"description": "No such job (empty body)"}}},
        "patch": {"summary": "Update a queued or held job (null clears a clearable field)",
                  "parameters": [_job_id], "requestBody": {"required": True, "content": {
                      "application/json": {"schema": {"type": "object"}}}},
                  "responses": {"200": _json({"type": "object",
                                              "required": ["job", "updated_fields"]}),
                                "400": _err("Invalid update"), "404": _err("No such job"),
                                "409": _err("Job not queued or held")}},
    },
    "/jobs/{id}/finish": _transition("finish", "Running to Finished"),
    "/jobs/{id}/fail": _transition("fail", "Running to Failed"),
    "/jobs/{id}/cancel": _transition("cancel", "Cancel a queued, held or running job"),
    "/jobs/{id}/hold": _transition("hold", "Queued to Hold"),
    "/jobs/{id}/release": {"post": {**_transition("release", "Hold to Queued")["post"],
                                    "requestBody": {"required": False, "content": {
                                        "application/json": {"schema": {
                                            "type": "object", "properties": {"at": {
                                                "type": "number", "minimum": 0,
                                                "description": "not to start before "
                                                               "(epoch seconds; ours)"}}}}}}}},
    "/jobs/{id}/redo": {"post": {"summary": "Resubmit a finished job with its full spec",
                                 "parameters": [_job_id], "requestBody": {
                                     "required": False, "content": {"application/json": {
                                         "schema": {"type": "object"}}}},
                                 "responses": {"201": _json({"type": "object"}),
                                               "404": _err("No such job"),
                                               "409": _err("Job not finished")}}},
    "/jobs/{id}/signal": {"post": {"summary": "Forward a signal to a running job's process group",
                                   "parameters": [_job_id], "requestBody": {
                                       "required": True, "content": {"application/json": {
                                           "schema": {"type": "object",
                                                      "required": ["signal"]}}}},
                                   "responses": {"200": _json({"type": "object"}),
                                                 "400": _err("Unknown signal"),
                                                 "404": _err("No such job"),
                                                 "409": _err("Job not running")}}},
    "/jobs/{id}/log": {"get": {"summary": "Path of the job's log", "parameters": [
        _job_id, _q("attempt", {"type": "integer", "minimum": 1},
                    "an earlier attempt of a retried job (ours)")],
                               "responses": {"200": _json({"type": "string"}),
                                             "404": _json({"type": "null"})}}},
    "/jobs/{id}/log/lines": {"get": {
        "summary": "The first or last K lines of a job's log, read without the rest (ours)",
        "parameters": [_job_id, _q("first", {"type": "integer", "minimum": 0}),
                       _q("last", {"type": "integer", "minimum": 0}),
                       _q("attempt", {"type": "integer", "minimum": 1})],
        "responses": {"200": _text("The lines (X-Gflow-Truncated: 1 when cut at 16 MiB)"),
                      "400": _err("Not exactly one of first and last"),
                      "404": {"description": "No such job, attempt or log"}}}},
    "/jobs/{id}/suspend": {"post": {
        "summary": "SIGSTOP a running job's whole tree; it keeps its GPUs (ours)",
        "parameters": [_job_id], "responses": {
            "200": _json({"type": "object"}), "403": _err("Not the owner or an admin"),
            "404": _err("No such job"), "409": _err("Not running, or already suspended")}}},
    "/jobs/{id}/resume": {"post": {
        "summary": "SIGCONT a suspended job's whole tree (ours)",
        "parameters": [_job_id], "responses": {
            "200": _json({"type": "object"}), "403": _err("Not the owner or an admin"),
            "404": _err("No such job"), "409": _err("Not running, or not suspended")}}},
    "/fair-share": {"get": {
        "summary": "Each user's decayed recent GPU use and fair-share factor (ours)",
        "responses": {"200": _json({"type": "object",
                                    "required": ["enabled", "half_life_secs", "users"]})}}},
    "/quotas": {
        "get": {"summary": "Quotas per user and project, with usage (ours, as upstream)",
                "responses": {"200": _json({"type": "object", "required": ["quotas"]})}},
        "put": {"summary": "Set a quota override (admins)", "requestBody": {
            "required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["scope", "limits"], "properties": {
                    "scope": {"enum": ["user", "project", "default_user",
                                       "default_project"]},
                    "name": _opt({"type": "string"}),
                    "limits": {"type": "object", "properties": {
                        k: _opt({"type": "integer", "minimum": 0}) for k in (
                            "max_running_jobs", "max_running_gpus",
                            "max_queued_jobs")}}}}}}},
            "responses": {"200": _json({"type": "object"}), "400": _err("Bad subject or limits"),
                          "403": _err("Not an admin")}},
        "delete": {"summary": "Remove a quota override (admins)", "parameters": [
            _q("scope", {"type": "string"}), _q("name", {"type": "string"})],
            "responses": {"200": _json({"type": "object"}), "400": _err("Bad subject"),
                          "403": _err("Not an admin"), "404": _err("No such override")}}},
    "/gpus": {"post": {"summary": "Set the allowed GPU indices", "requestBody": {
        "required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {"200": _json({"type": "object"}), "400": _err("Invalid indices")}},
        "get": {"summary": "Per GPU: state, memory, utilisation, processes and their owners "
                           "(ours)",
                "responses": {"200": _json({"type": "object", "required": ["gpus"]})}}},
    "/gpu-processes": {"get": {"summary": "Every GPU process with its owner, and the ignored "
                                          "ones (ours)",
                               "responses": {"200": _json({"type": "object",
                                                           "required": ["processes"]})}}},
    "/gpu-processes/{id}/ignore": {
        "post": {"summary": "Ignore a foreign GPU process: its GPU counts as free, its "
                            "memory as used, until it ends (admins; ours)",
                 "parameters": [_pid], "responses": {
                     "200": _json({"type": "object"}), "400": _text("Bad process id"),
                     "403": _err("Not an admin"), "404": _err("No GPU reports it"),
                     "409": _err("A gflow job's process")}},
        "delete": {"summary": "Stop ignoring a GPU process (admins; ours)",
                   "parameters": [_pid], "responses": {
                       "200": _json({"type": "object"}), "400": _text("Bad process id"),
                       "403": _err("Not an admin"), "404": _err("Not ignored")}}},
    "/groups/{group_id}/max-concurrency": {"post": {
        "summary": "Set a group's concurrency limit",
        "parameters": [{"name": "group_id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["max_concurrent"]}}}},
        "responses": {"200": _json({"type": "object", "required": ["updated_jobs"]}),
                      "400": _err("Invalid group id or body"), "404": _err("No such group")}}},
    "/reservations": {
        "get": {"summary": "List reservations (history included)", "parameters": [
            _q("user", {"type": "string"}), _q("status", {"type": "string"}),
            _q("active_only", {"type": "boolean"})],
            "responses": {"200": _json({"type": "array",
                                        "items": {"$ref": "#/components/schemas/Reservation"}}),
                          "400": _text("Bad filter")}},
        "post": {"summary": "Create a reservation", "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object",
                                            "required": ["user", "start_time",
                                                         "duration_secs"]}}}},
            "responses": {"200": _json({"type": "object", "required": ["reservation_id"]}),
                          "400": _text("Refused")}},
    },
    "/reservations/{id}": {
        "get": {"summary": "One reservation", "parameters": [_res_id], "responses": {
            "200": _json({"$ref": "#/components/schemas/Reservation"}),
            "404": _text("Not found")}},
        "delete": {"summary": "Cancel a reservation", "parameters": [_res_id], "responses": {
            "200": {"description": "Cancelled (empty body)"}, "404": _text("Not found"),
            "409": _text("Already cancelled or completed")}},
    },
    "/stats": {"get": {"summary": "Usage statistics", "parameters": [
        _q("user", {"type": "string"}), _q("since", {"type": "integer"})],
        "responses": {"200": _json({"type": "object"}), "400": _text("Bad query value")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics",
                         "responses": {"200": _text("Prometheus text format")}}},
    "/events": {"get": {"summary": "Server-sent events: every job, GPU and reservation event",
                        "parameters": [_q("events", {"type": "string"}, "comma list of names"),
                                       _q("user", {"type": "string"}, "comma list")],
                        "responses": {"200": {"description": "An event stream", "content": {
                            "text/event-stream": {"schema": {"type": "string"}}}},
                            "503": _err("Too many streams")}}},
    "/debug/state": {"get": {"summary": "Full state dump",
                             "responses": {"200": _json({"type": "object"})}}},
    "/debug/jobs/{id}": {"get": {"summary": "A job with runtime figures", "parameters": [_job_id],
                                 "responses": {"200": _json({"type": "object"}),
                                               "404": {"description": "No such job"}}}},
    "/debug/metrics": {"get": {"summary": "Counts by state and user",
                               "responses": {"200": _json({"type": "object"})}}},
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "gflow daemon API", "version": __version__,
             "description": "Wire-compatible with gflow 0.4.13; our additions: PATCH null "
                            "clears, POST /jobs/{id}/redo, 409 for illegal transitions, "
                            "exit_code/reason_detail/env job keys, reservation history."},
    "paths": PATHS,
    "components": {"schemas": {"Job": JOB, "Reservation": RESERVATION, "Error": ERROR}},
}
