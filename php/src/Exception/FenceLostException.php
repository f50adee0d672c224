<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * FenceLostException is a FAILED_PRECONDITION whose fence no longer holds: the write's token no longer leads its election or holds its lock, and nothing changed. A worker that gets it must stop acting as leader (or holder).
 */
class FenceLostException extends FailedPreconditionException
{
}
