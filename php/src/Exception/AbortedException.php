<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * AbortedException is ABORTED (HTTP 409): a change that kept losing to concurrent writers; try again.
 */
class AbortedException extends PaddockException
{
}
