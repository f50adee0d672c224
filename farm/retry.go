package farm

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// Long-running loops (Join, Export) keep going while the cluster is
// unreachable: they log and try again after backoff(attempt).
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = 5 * time.Second
	// pollTimeout is a joiner's long poll wait: a quiet host costs one
	// request per pollTimeout.
	pollTimeout = 10 * time.Second
	// exportPollTimeout is an exporter's: short, because it also bounds
	// how long an exporter can go on trusting a node that stopped
	// answering (the Go client gives a poll its timeout plus a second,
	// then tries the next node; a node cut off from the leader ends its
	// polls itself within a heartbeat timeout). A quiet farm costs one
	// request per exportPollTimeout and exporter.
	exportPollTimeout = 2 * time.Second
)

// ReadAttempt is the client's Config.ReadAttemptTimeout for an exporter:
// its poll's timeout and the client's second. A node that stops answering
// holds the exporter's reads of the farm no longer than its polls, so
// that the exporter moves to another node within that much however the
// node went silent (with no limit, a read sent to a node whose answers
// are dropped waits until they flow again).
const ReadAttempt = exportPollTimeout + time.Second

// backoff is the wait before retry attempt (0-based): 100 ms doubling up
// to 5 s.
func backoff(attempt int) time.Duration {
	return min(retryFirst<<min(attempt, 10), retryMax)
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// cancelReason is the reason of a canceled watch or poll: from the
// WatchCanceled detail of a status error, or from an error that carries it
// (the Go client turns gaps into *client.CompactedError, which has
// CancelReason).
func cancelReason(err error) paddockv1.WatchCancelReason {
	var r interface {
		CancelReason() paddockv1.WatchCancelReason
	}
	if errors.As(err, &r) {
		return r.CancelReason()
	}
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if wc, ok := d.(*paddockv1.WatchCanceled); ok {
				return wc.GetReason()
			}
		}
	}
	return paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_UNSPECIFIED
}

// isGap reports a poll that cannot go on from its after_zxid without
// losing events: the state must be read again.
func isGap(err error) bool {
	switch cancelReason(err) {
	case paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_COMPACTED,
		paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_SNAPSHOT_RESTORED,
		paddockv1.WatchCancelReason_WATCH_CANCEL_REASON_FUTURE_ZXID:
		return true
	}
	return false
}

// pollMillis is d as a poll's timeout_ms, at least 1 (0 would mean the
// server's default).
func pollMillis(d time.Duration) int64 {
	return max(d.Milliseconds(), 1)
}
