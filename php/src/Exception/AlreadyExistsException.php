<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * AlreadyExistsException is ALREADY_EXISTS (HTTP 409): the znode exists.
 */
class AlreadyExistsException extends PaddockException
{
}
