"""The naq error tree: every error naq raises derives from :class:`NaqException`."""

from __future__ import annotations


class NaqException(Exception):
    """Root of every error raised by naq."""


NaqError = NaqException


class NaqConnectionError(NaqException):
    """NATS could not be reached, refused the login, or the connection was lost."""


class NaqTimeoutError(NaqConnectionError, TimeoutError):
    """NATS did not answer in time (also an :class:`asyncio.TimeoutError`)."""


class LoginRefusedError(NaqConnectionError):
    """NATS refused this client: its login, credentials or TLS certificates (or TLS asked for
    and not offered). Permanent: trying again cannot help, so naq never retries it."""


class ServerError(NaqConnectionError):
    """The NATS server refused a request; ``code``/``err_code`` are the server's codes."""

    def __init__(self, message: str, *, code: int = 0, err_code: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.err_code = err_code


class WriteConflictError(ServerError):
    """A compare-and-set write found the key or subject at another revision."""


class ConfigurationError(NaqException, ValueError):
    """A setting, option or argument is invalid; raised at the call that received it."""


class SerializationError(NaqException, TypeError):
    """A value cannot travel faithfully with the chosen serializer, or a payload cannot be read."""


class PayloadTooLargeError(SerializationError):
    """A message would exceed the server's ``max_payload``; nothing was sent."""


class JobNotFoundError(NaqException, LookupError):
    """No job with that id exists, or it has not finished yet."""


class FunctionNotAllowedError(NaqException):
    """The worker's allow-list refuses to run the function a job names.

    ``path`` is the job's ``"module:qualname"`` text and ``reason`` says why it was refused.
    """

    def __init__(self, message: str, *, path: str, reason: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason or message


class FunctionNotFoundError(NaqException):
    """The function a job names cannot be found: its module or attribute is missing, the
    path is malformed, or importing the module failed. ``path`` is the job's text."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class JobExecutionError(NaqException):
    """The job ran and failed; the message names the remote exception type and text."""

    def __init__(
        self, message: str, *, error_type: str | None = None, traceback: str | None = None
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.remote_traceback = traceback


class JobTimeoutError(JobExecutionError):
    """The job ran longer than its ``timeout``."""


class JobCancelledError(JobExecutionError):
    """The job was cancelled before it could finish."""


class PublishNotConfirmedError(NaqTimeoutError):
    """NATS did not confirm a write that naq re-sent with the same message id until its
    deadline: it may not be stored. Sending it again with the same id (for a job: enqueue
    again with the same ``job_id``) is safe within the stream's duplicate window."""


__all__ = [
    "ConfigurationError",
    "FunctionNotAllowedError",
    "FunctionNotFoundError",
    "JobCancelledError",
    "JobExecutionError",
    "JobNotFoundError",
    "JobTimeoutError",
    "LoginRefusedError",
    "NaqConnectionError",
    "NaqError",
    "NaqException",
    "NaqTimeoutError",
    "PayloadTooLargeError",
    "PublishNotConfirmedError",
    "SerializationError",
    "ServerError",
    "WriteConflictError",
]
