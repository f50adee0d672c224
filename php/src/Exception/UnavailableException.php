<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * UnavailableException is UNAVAILABLE (HTTP 503) from every endpoint tried, or no endpoint reachable, until the call's time ran out. A write may or may not have been applied: retrying it is safe (see Client).
 */
class UnavailableException extends PaddockException
{
}
