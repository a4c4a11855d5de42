"""Size caps on what a job carries ([api] max_command_bytes, max_env_bytes), checked before a submission or update reaches the scheduler."""

from __future__ import annotations

from typing import Any, Optional

from flask import current_app

from gflow.api.replies import ApiError

__all__ = ["JobLimits", "check_job"]


class JobLimits:
    def __init__(self, max_command_bytes: int = 1024 * 1024, max_env_bytes: int = 1024 * 1024):
        self.max_command_bytes = max_command_bytes
        self.max_env_bytes = max_env_bytes


def _text_bytes(value: Any) -> int:
    # Other types are the scheduler's to refuse; json_body has ruled out lone surrogates.
    return len(value.encode("utf-8")) if isinstance(value, str) else 0


def env_bytes(env: Any) -> int:
    """What the environment takes as KEY=VALUE strings, as execve counts it."""
    if not isinstance(env, dict):
        return 0
    return sum(_text_bytes(k) + _text_bytes(v) + 2 for k, v in env.items())


def check_job(job: Any, which: Optional[str] = None) -> None:
    """Refuse (413, one line) a job body whose command, script or environment is larger
    than the configured cap; `which` names the job within a batch."""
    if not isinstance(job, dict):
        return
    limits: JobLimits = current_app.config["JOB_LIMITS"]
    prefix = f"{which}: " if which else ""
    for field in ("command", "script"):
        size = _text_bytes(job.get(field))
        if size > limits.max_command_bytes:
            raise ApiError(413, {"error": f"{prefix}`{field}` is {size} bytes; at most "
                                          f"{limits.max_command_bytes} are accepted "
                                          "([api] max_command_bytes)"})
    size = env_bytes(job.get("env"))
    if size > limits.max_env_bytes:
        raise ApiError(413, {"error": f"{prefix}`env` is {size} bytes; at most "
                                      f"{limits.max_env_bytes} are accepted "
                                      "([api] max_env_bytes)"})
