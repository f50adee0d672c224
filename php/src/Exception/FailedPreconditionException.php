<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * FailedPreconditionException is FAILED_PRECONDITION (HTTP 412): a version that does not match, a node with children, a lock not held... (the subclasses FenceLostException and SessionExpiredException name two of them).
 */
class FailedPreconditionException extends PaddockException
{
}
