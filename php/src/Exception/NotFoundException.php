<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * NotFoundException is NOT_FOUND (HTTP 404): no such znode (or parent), session, or route.
 */
class NotFoundException extends PaddockException
{
}
