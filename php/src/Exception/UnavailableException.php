<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * UnavailableException is UNAVAILABLE (HTTP 503) from every endpoint tried, or no endpoint reachable, until the call's time ran out. A write may or may not have been applied. Calling the method again is a new request (a new Idempotency-Key): harmless for campaigns, acquires, resigns and releases, but a sequential create may happen twice; Client::call with a request id of your own repeats the very same request.
 */
class UnavailableException extends PaddockException
{
}
