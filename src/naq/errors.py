"""The naq error tree: every error naq raises derives from :class:`NaqException`."""

from __future__ import annotations


class NaqException(Exception):
    """Root of every error raised by naq: ``except naq.NaqException`` catches them all.

    Also importable as :data:`NaqError`. The message says what went wrong and, where the
    caller can act, what to do."""


NaqError = NaqException


class NaqConnectionError(NaqException):
    """NATS could not be reached, refused the login, or the connection was lost.

    The message names the URL (passwords and tokens shown as ``***``) and the cause. Usually
    transient: start NATS (``naq server``), check ``NAQ_NATS_URL``, or try again. A worker
    that loses NATS for good stops with this error."""


class NaqTimeoutError(NaqConnectionError, TimeoutError):
    """NATS did not answer in time (also a :class:`TimeoutError`, so
    ``asyncio.TimeoutError``).

    The message names the request that timed out. Transient: the server is slow, overloaded
    or electing a leader; trying again is safe for reads and for enqueues with a ``job_id``."""


class LoginRefusedError(NaqConnectionError):
    """NATS refused this client: its login, credentials or TLS certificates (or TLS asked for
    and not offered). Permanent: trying again cannot help, so naq never retries it.

    The message names the URL and what was refused; fix the user, password or token in the
    URL, ``NAQ_NATS_CREDS``/``NAQ_NATS_NKEY``, or the ``NAQ_NATS_TLS_*`` files."""


class ServerError(NaqConnectionError):
    """The NATS server refused a request; ``code``/``err_code`` are the server's codes.

    The message names the request and quotes the server's reason, e.g. JetStream not
    enabled (start ``nats-server -js``, or ``naq server``), a stream limit reached, or a
    permissions violation (the NATS user lacks a permission naq needs)."""

    def __init__(self, message: str, *, code: int = 0, err_code: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.err_code = err_code


class WriteConflictError(ServerError):
    """A compare-and-set write found the key or subject at another revision.

    Another process changed the same record first (two admins editing one schedule or
    limit, say). naq handles it itself where a retry is right; seen by the caller, read
    the current state again and retry."""


class ConfigurationError(NaqException, ValueError):
    """A setting, option or argument is invalid; raised at the call that received it.

    Also a :class:`ValueError`. The message names the setting, option or ``NAQ_*``
    variable, the value given (never a secret) and what is accepted; nothing was sent or
    stored. Permanent: fix the value."""


class SerializationError(NaqException, TypeError):
    """A value cannot travel faithfully with the chosen serializer, or a payload cannot be read.

    Also a :class:`TypeError`. Raised at the enqueue for an argument JSON cannot carry
    exactly (the message names where in the call, and the type), or a
    function that cannot be sent by path (a lambda, a nested function, a bound method):
    send plain data, define the function at module level. Nothing was sent."""


class PayloadTooLargeError(SerializationError):
    """A message would exceed the server's ``max_payload``; nothing was sent.

    Send a reference to large data (a key, a path, a URL) instead of the data, or raise the
    server's ``max_payload``."""


class JobNotFoundError(NaqException, LookupError):
    """No job with that id exists, or it has not finished yet.

    Also a :class:`LookupError`. The message names the id. Raised by
    ``fetch_job_result`` for an unknown or unfinished job (pass ``timeout=`` to wait for
    it), ``get_job_info``/``get_job_status`` and ``cancel_job`` for an unknown id, and the
    schedule calls for an unknown schedule; records expire after ``result_ttl``."""


class FunctionNotAllowedError(NaqException):
    """The worker's allow-list refuses to run the function a job names.

    ``path`` is the job's ``"module:qualname"`` text and ``reason`` says why it was refused.
    A worker never raises it to you: the job goes to the dead-letter stream with the reason,
    and the message says how to allow the function (run the worker from the project's
    directory, ``--module-path``, or ``NAQ_ALLOWED_MODULES``). Library functions such as
    ``os.system`` are refused unless allowed; naq's own code can never be allowed.
    """

    def __init__(self, message: str, *, path: str, reason: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason or message


class FunctionNotFoundError(NaqException):
    """The function a job names cannot be found: its module or attribute is missing, the
    path is malformed, or importing the module failed. ``path`` is the job's text.

    In a worker the job goes to the dead-letter stream with this message; deploy the code
    to the worker (same module path as the producer's) and requeue it (``naq dlq requeue``).
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class JobExecutionError(NaqException):
    """The job ran and failed; the message names the remote exception type and text.

    Raised by ``fetch_job_result`` (and ``Job.result``) for a job that failed after its
    retries, or is dead (never ran properly). ``error_type`` is the remote exception's
    ``"module:qualname"`` and ``remote_traceback`` its traceback, when known."""

    def __init__(
        self, message: str, *, error_type: str | None = None, traceback: str | None = None
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.remote_traceback = traceback


class JobTimeoutError(JobExecutionError):
    """The job ran longer than its ``timeout``.

    In the worker it counts as a failed attempt and is retried like any exception (as
    ``max_retries``, ``retry_on`` and ``ignore_on`` say); ``fetch_job_result`` raises it
    once the job failed for good. Raise ``timeout`` or make the job faster."""


class JobCancelledError(JobExecutionError):
    """The job was cancelled before it could finish.

    Raised by ``fetch_job_result`` for a job cancelled with ``cancel_job``, one whose
    dependency failed, or one not started by its ``expires`` time; the message says which
    when naq knows."""


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
