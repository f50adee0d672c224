<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * InvalidArgumentException is INVALID_ARGUMENT (HTTP 400): a request that can never succeed as it is (bad path, bad name, data too large, bad argument).
 */
class InvalidArgumentException extends PaddockException
{
}
