"""The original naq's exception names, for programs written for it.

``from naq.exceptions import JobNotFoundError`` keeps working: every exception name the
original naq had in its ``naq.exceptions`` module is here, bound to the naq class that is
raised in the same situation. They are aliases, not new classes: ``except`` clauses written
for the original catch what naq raises, and ``naq.exceptions.X is naq.errors.Y`` holds.

Where the original had a class naq does not have, the name points to the closest class of
:mod:`naq.errors`:

| original name | naq class |
| --- | --- |
| ``NaqException``, ``NAQError`` | :class:`~naq.errors.NaqException` |
| ``ConnectionError`` | :class:`~naq.errors.NaqConnectionError` |
| ``ValidationError`` | :class:`~naq.errors.ConfigurationError` |
| ``TypeConversionError`` | :class:`~naq.errors.ConfigurationError` |
| ``LeaderElectionError`` | :class:`~naq.errors.NaqConnectionError` |
| ``LockAcquisitionError`` | :class:`~naq.errors.ServerError` |
| ``LockRenewalError`` | :class:`~naq.errors.ServerError` |
| ``LockReleaseError`` | :class:`~naq.errors.ServerError` |
| ``LockUpdateError`` | :class:`~naq.errors.ServerError` |
| ``LockConflictError`` | :class:`~naq.errors.WriteConflictError` |
| ``LockTimeoutError`` | :class:`~naq.errors.NaqTimeoutError` |
| ``LockDataError`` | :class:`~naq.errors.SerializationError` |
| ``JobResultError`` | :class:`~naq.errors.NaqException` |
| ``JobResultNotFound`` | :class:`~naq.errors.JobNotFoundError` |
| ``JobResultSerializationError`` | :class:`~naq.errors.SerializationError` |
| ``JobResultStorageError`` | :class:`~naq.errors.NaqConnectionError` |

The names the two share (``ConfigurationError``, ``SerializationError``,
``JobExecutionError``, ``JobNotFoundError``, ``NaqConnectionError``) are naq's own classes,
and so is every other name of :mod:`naq.errors`, re-exported here. New code should import
from :mod:`naq` or :mod:`naq.errors`.

Two differences an ``except`` clause may notice: naq's scheduler raises no lock errors to
the caller (its leader election is internal), so the ``Lock*`` names catch the NATS errors
of the same kind; and ``JobResultError`` is the root of every naq error, since naq's result
calls raise :class:`~naq.errors.JobNotFoundError`, :class:`~naq.errors.JobExecutionError`,
:class:`~naq.errors.SerializationError` or :class:`~naq.errors.NaqConnectionError`.
"""

from __future__ import annotations

from .errors import (
    ConfigurationError,
    FunctionNotAllowedError,
    FunctionNotFoundError,
    JobCancelledError,
    JobExecutionError,
    JobNotFoundError,
    JobTimeoutError,
    LoginRefusedError,
    NaqConnectionError,
    NaqError,
    NaqException,
    NaqTimeoutError,
    PayloadTooLargeError,
    PublishNotConfirmedError,
    SerializationError,
    ServerError,
    WriteConflictError,
)

#: The original's other spelling of the root class.
NAQError = NaqException
#: The original's first connection error (it shadowed the builtin of the same name).
ConnectionError = NaqConnectionError
#: A parameter or value was refused.
ValidationError = ConfigurationError
#: A value could not be converted to the type a parameter needs.
TypeConversionError = ConfigurationError

#: The scheduler's leader election talks to NATS; its failures are NATS errors.
LeaderElectionError = NaqConnectionError
LockAcquisitionError = ServerError
LockRenewalError = ServerError
LockReleaseError = ServerError
LockUpdateError = ServerError
LockConflictError = WriteConflictError
LockTimeoutError = NaqTimeoutError
LockDataError = SerializationError

#: Results: naq's result calls raise the classes below (or the root class).
JobResultError = NaqException
JobResultNotFound = JobNotFoundError
JobResultSerializationError = SerializationError
JobResultStorageError = NaqConnectionError

#: Every exception name of the original naq, and what it is here.
ORIGINAL_NAMES: dict[str, type[NaqException]] = {
    "NaqException": NaqException,
    "NAQError": NAQError,
    "ConnectionError": ConnectionError,
    "NaqConnectionError": NaqConnectionError,
    "ConfigurationError": ConfigurationError,
    "SerializationError": SerializationError,
    "JobExecutionError": JobExecutionError,
    "JobNotFoundError": JobNotFoundError,
    "ValidationError": ValidationError,
    "TypeConversionError": TypeConversionError,
    "LeaderElectionError": LeaderElectionError,
    "LockAcquisitionError": LockAcquisitionError,
    "LockRenewalError": LockRenewalError,
    "LockReleaseError": LockReleaseError,
    "LockTimeoutError": LockTimeoutError,
    "LockConflictError": LockConflictError,
    "LockDataError": LockDataError,
    "LockUpdateError": LockUpdateError,
    "JobResultError": JobResultError,
    "JobResultNotFound": JobResultNotFound,
    "JobResultSerializationError": JobResultSerializationError,
    "JobResultStorageError": JobResultStorageError,
}

__all__ = [
    "ORIGINAL_NAMES",
    "ConfigurationError",
    "ConnectionError",
    "FunctionNotAllowedError",
    "FunctionNotFoundError",
    "JobCancelledError",
    "JobExecutionError",
    "JobNotFoundError",
    "JobResultError",
    "JobResultNotFound",
    "JobResultSerializationError",
    "JobResultStorageError",
    "JobTimeoutError",
    "LeaderElectionError",
    "LockAcquisitionError",
    "LockConflictError",
    "LockDataError",
    "LockReleaseError",
    "LockRenewalError",
    "LockTimeoutError",
    "LockUpdateError",
    "LoginRefusedError",
    "NAQError",
    "NaqConnectionError",
    "NaqError",
    "NaqException",
    "NaqTimeoutError",
    "PayloadTooLargeError",
    "PublishNotConfirmedError",
    "SerializationError",
    "ServerError",
    "TypeConversionError",
    "ValidationError",
    "WriteConflictError",
]
