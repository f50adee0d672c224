<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * TimeoutException is DEADLINE_EXCEEDED (HTTP 504), or no answer within the time the call was given.
 */
class TimeoutException extends PaddockException
{
}
