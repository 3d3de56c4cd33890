"""How a client command fails: a message, an exit code a script can test, never a traceback."""

from __future__ import annotations

from typing import Any

# Distinct exit codes so scripts can tell a dead server from a refused request.
EXIT_FAILED = 1  # the operation ran and failed: a job failed, a local file was not overwritten
EXIT_USAGE = 2  # bad arguments (click's own code for usage errors)
EXIT_NETWORK = 3  # the server could not be reached
EXIT_AUTH = 4  # not signed in, or the credential was refused (401)
EXIT_FORBIDDEN = 5  # signed in but not allowed (403: scope, role, not a member)
EXIT_NOT_FOUND = 6  # 404
EXIT_PROBLEM = 7  # any other refusal by the server (validation, conflict, credits, 5xx)
EXIT_TIMEOUT = 8  # `jobs run --wait` gave up before the job finished


class CliError(Exception):
    """Everything a command can fail with: rendered as a message (or a JSON error document with
    --json) and an exit code, never as a traceback."""

    def __init__(
        self,
        message: str,
        exit_code: int,
        *,
        code: str | None = None,
        hint: str | None = None,
        status: int | None = None,
        details: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code
        self.hint = hint
        self.status = status
        self.details = details or []
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "exit_code": self.exit_code}
        for key in ("code", "hint", "status"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.details:
            body["details"] = self.details
        body.update(self.extra)
        return body
