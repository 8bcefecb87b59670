"""Exit codes and the project's exception types.

Every failure the user can meet is a ``CloudChatError`` carrying its exit code and, where one
helps, a hint. ``app.run()`` is the one place that turns them into output and a process status.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    AUTH = 3
    NOT_FOUND = 4
    RATE_LIMITED = 5
    SERVER = 6
    NETWORK = 7
    PARTIAL = 8
    INTERRUPTED = 130


class CloudChatError(Exception):
    """An error meant for the user: a one-line message, an optional hint, an exit code."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = ExitCode(exit_code)


class UsageError(CloudChatError):
    """Bad flag, bad input file, invalid recipient: nothing was sent."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration file or a setting's value is not usable."""


class CredentialsError(CloudChatError):
    """No API key (or webhook secret) could be found, or one could not be stored."""

    exit_code = ExitCode.AUTH


class NetworkError(CloudChatError):
    """The server could not be reached, or did not answer in time."""

    exit_code = ExitCode.NETWORK

    def __init__(self, message: str, *, outcome_unknown: bool = False, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.outcome_unknown = outcome_unknown


class UnexpectedResponse(NetworkError):
    """A 2xx that does not carry what the endpoint answers with (an HTML page from a captive
    portal or proxy, truncated JSON, an empty body): whether the request was carried out is
    unknown, and every later request would get the same."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message, outcome_unknown=True, hint=hint)


class RateLimitWait(CloudChatError):
    """A request would have to wait for the rate limit and the caller asked not to."""

    exit_code = ExitCode.RATE_LIMITED


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM.

    Not an ``Exception`` (like ``KeyboardInterrupt``): it may be raised at any point while the
    main thread waits — for the keyring, a rate-limit slot, a retry — and no ``except
    Exception`` guarding that wait may swallow it and report some other failure. Only
    ``app.main()`` catches it.
    """

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str = "interrupted", *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


def process_status(code: object, stderr: Any) -> int:
    """The process status ``sys.exit(code)`` would give; a message ``code`` is printed to
    ``stderr``, as the interpreter would."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=stderr)
    return 1


def exit_code_for_status(status: int) -> ExitCode:
    """Map an HTTP error status to the exit code documented for it."""
    if status in (401, 403):
        return ExitCode.AUTH
    if status == 404:
        return ExitCode.NOT_FOUND
    if status == 429:
        return ExitCode.RATE_LIMITED
    if status >= 500:
        return ExitCode.SERVER
    if status in (400, 413, 422):
        return ExitCode.USAGE
    return ExitCode.FAILURE


class ApiError(CloudChatError):
    """The API answered with an error status; ``code``/``type``/``message`` come from its body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | int | None = None,
        type: str | None = None,
        param: str | None = None,
        hint: str | None = None,
        location: str | None = None,
    ):
        self.status = status
        self.location = location  # a 3xx's Location (never followed)
        self.code = code if code is not None else status
        self.type = type
        self.param = param
        self.api_message = message
        label = f"HTTP {status}"
        if type:
            label += f" {type}"
        super().__init__(f"{label}: {message}", hint=hint, exit_code=exit_code_for_status(status))
