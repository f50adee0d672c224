<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * SessionExpiredException is a FAILED_PRECONDITION because the session expired (or is unknown): its ephemerals, candidates and locks are gone. Open a new Lease.
 */
class SessionExpiredException extends FailedPreconditionException
{
}
