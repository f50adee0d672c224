<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * OutOfRangeException is OUT_OF_RANGE (HTTP 410): a poll from a zxid the node no longer holds (or not yet reached), or a listing that changed: read again.
 */
class OutOfRangeException extends PaddockException
{
}
