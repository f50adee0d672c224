<?php

declare(strict_types=1);

namespace Paddock\Exception;

/**
 * PaddockException is the base of every error the library throws: an
 * error answer of the cluster (its gRPC code is getCode(), its message
 * getMessage(), its HTTP status getHttpStatus()) or no answer at all
 * (UnavailableException, TimeoutException). Match the class or the code,
 * never the message.
 */
class PaddockException extends \RuntimeException
{
    /** @var int HTTP status of the answer (0 when there was none) */
    private $httpStatus;

    /** @var array<int, mixed> the google.rpc.Status details of the answer */
    private $details;

    /** @var string|null the node that answered (Served-By) */
    private $servedBy;

    /**
     * @param string $message the cluster's message, or what went wrong
     * @param int $grpcCode the gRPC status code (0 when there was no answer)
     * @param int $httpStatus the HTTP status (0 when there was no answer)
     * @param array<int, mixed> $details the error's details
     * @param string|null $servedBy the Served-By header of the answer
     */
    public function __construct(string $message, int $grpcCode = 0, int $httpStatus = 0, array $details = [], ?string $servedBy = null, ?\Throwable $previous = null)
    {
        parent::__construct($message, $grpcCode, $previous);
        $this->httpStatus = $httpStatus;
        $this->details = $details;
        $this->servedBy = $servedBy;
    }

    /** getHttpStatus is the answer's HTTP status, 0 when there was no answer. */
    public function getHttpStatus(): int
    {
        return $this->httpStatus;
    }

    /**
     * getDetails is the error's details as decoded JSON (e.g. a
     * paddock.v1.MultiFailure with its failed_index).
     *
     * @return array<int, mixed>
     */
    public function getDetails(): array
    {
        return $this->details;
    }

    /** getServedBy is the node that answered with this error, if any. */
    public function getServedBy(): ?string
    {
        return $this->servedBy;
    }
}
