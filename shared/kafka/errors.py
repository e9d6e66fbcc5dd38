"""Which failures are the infrastructure's (retry forever, never dead-letter) and which
are the message's (bounded retries, then the dead-letter topic)."""

from __future__ import annotations

import asyncpg
import redis.exceptions

# The database, the cache or the network is unavailable: the message is not at fault, so
# the batch is rolled back, not committed, and retried until the dependency returns.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    # A failover in progress: the old primary turned read-only, or the new one is starting.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.CannotConnectNowError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def is_infrastructure_error(exc: BaseException) -> bool:
    return isinstance(exc, INFRASTRUCTURE_ERRORS)
