package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// contendPause is how long a contender waits before it retries after an
// error, so that a cluster that is down is not called in a busy loop.
const contendPause = 100 * time.Millisecond

// errLeadershipLost ends a leader's observation of its election.
var errLeadershipLost = errors.New("bench: leadership lost")

// Contend is a contender of Paddock election name, the process the
// election workloads start (`paddock bench contend`, ContenderCluster):
// it speaks the contender protocol on out (see WriteContenderLine) and
// logs errors to logw, until ctx ends.
//
// It opens a session with ttl kept alive in the background, campaigns
// (ElectionService Campaign through the Go client), and once elected
// leads until it sees another leader (Observe), its session ends, or its
// session has been unconfirmed (no keepalive acknowledged) for the session
// timeout: what `paddock elect` stops its CMD on. It then closes the
// session, which withdraws its candidate, and campaigns again with a new
// one.
func Contend(ctx context.Context, endpoints []string, name string, ttl time.Duration, out, logw io.Writer) error {
	c, err := client.New(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer c.Close()
	for ctx.Err() == nil {
		if err := contendOnce(ctx, c, name, ttl, out); err != nil && ctx.Err() == nil {
			fmt.Fprintf(logw, "paddock: bench contend: %v\n", err)
			t := time.NewTimer(contendPause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
	return nil
}

// contendOnce runs one session: campaign, lead, stop. It returns an error
// for what ended the session early (it could not open one, campaign or
// write out).
func contendOnce(ctx context.Context, c *client.Client, name string, ttl time.Duration, out io.Writer) error {
	changed := make(chan struct{}, 1)
	s, err := c.NewSession(ctx, ttl, client.OnConnectionState(func(client.ConnState) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}))
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Timeout())
		defer cancel()
		_ = s.Close(cctx)
	}()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The session's end ends its campaign and its leadership.
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-sctx.Done():
		}
	}()

	value := []byte(fmt.Sprintf("pid %d", os.Getpid()))
	req := &paddockv1.CampaignRequest{Name: name, Value: value, SessionId: s.ID()}
	type answer struct {
		resp *paddockv1.CampaignResponse
		err  error
	}
	campaigned := make(chan answer, 1)
	go func() {
		resp, err := c.Campaign(sctx, req)
		campaigned <- answer{resp, err}
	}()
	// Campaign registers the candidate and then waits to lead: the
	// contender is in line once its candidate (a child of the election's
	// znode named SEQUENCE-SESSIONID) exists.
	dir := "/paddock/elections/" + name
	suffix := fmt.Sprintf("-%d", s.ID())
	var (
		a        answer
		answered bool
	)
	for !answered {
		l, err := c.List(sctx, &paddockv1.ListRequest{Path: dir})
		if err == nil && slices.ContainsFunc(l.GetChildren(), func(ch *paddockv1.Child) bool {
			return strings.HasSuffix(ch.GetName(), suffix)
		}) {
			break
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case a = <-campaigned:
			answered = true
		case <-t.C:
		}
		t.Stop()
	}
	if !answered {
		if err := WriteContenderLine(out, ContenderCandidate, time.Now(), "session="+s.Timeout().String()); err != nil {
			return err
		}
		a = <-campaigned
	} else if a.err == nil {
		if err := WriteContenderLine(out, ContenderCandidate, time.Now(), "session="+s.Timeout().String()); err != nil {
			return err
		}
	}
	for a.err != nil || !a.resp.GetElected() {
		if a.err != nil {
			if s.Err() != nil {
				return WriteContenderLine(out, ContenderLost, time.Now(), "session ended: "+s.Err().Error())
			}
			if ctx.Err() != nil {
				return nil
			}
			// A campaign is idempotent per session: retrying keeps
			// the place.
			t := time.NewTimer(contendPause)
			select {
			case <-t.C:
			case <-sctx.Done():
			}
			t.Stop()
		}
		a.resp, a.err = c.Campaign(sctx, req)
	}
	elected := time.Now()
	if err := WriteContenderLine(out, ContenderElected, elected, ""); err != nil {
		return err
	}
	reason := lead(sctx, c, s, name, a.resp.GetCandidate().GetToken(), elected, changed)
	if ctx.Err() != nil {
		return nil
	}
	return WriteContenderLine(out, ContenderStopped, time.Now(), reason)
}

// lead watches a leader's election and session and returns why it must
// stop: another leader (or none) seen, the session ended, or the session
// unconfirmed for the session timeout: no keepalive acknowledged since
// then, and the campaign's answer, at elected, was not later either (the
// node renews a waiting candidate's session, and a new leader's keepalive
// stream may still be reconnecting). It returns "" when ctx ends.
func lead(ctx context.Context, c *client.Client, s *client.Session, name string, token uint64, elected time.Time, changed <-chan struct{}) string {
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	observed := make(chan error, 1)
	observe := func() {
		observed <- c.Observe(octx, name, func(l *paddockv1.Contender) error {
			if l.GetToken() != token {
				return errLeadershipLost
			}
			return nil
		})
	}
	go observe()
	// unconfirmed fires one session timeout after the last acknowledged
	// keepalive while the session is disconnected.
	unconfirmed := time.NewTimer(time.Hour)
	unconfirmed.Stop()
	// confirmedAt is when the session was last known alive, while it is
	// disconnected.
	confirmedAt := func() (time.Time, bool) {
		st := s.State()
		if st.State != client.StateDisconnected {
			return time.Time{}, false
		}
		if st.Since.Before(elected) {
			return elected, true
		}
		return st.Since, true
	}
	arm := func() {
		unconfirmed.Stop()
		if at, ok := confirmedAt(); ok {
			unconfirmed.Reset(time.Until(at.Add(s.Timeout())))
		}
	}
	arm()
	for {
		select {
		case <-ctx.Done():
			if err := s.Err(); err != nil {
				return "session ended: " + err.Error()
			}
			return ""
		case <-s.Done():
			return "session ended: " + s.Err().Error()
		case <-changed:
			arm()
		case <-unconfirmed.C:
			if at, ok := confirmedAt(); ok && time.Since(at) >= s.Timeout() {
				return fmt.Sprintf("session unconfirmed for %v", s.Timeout())
			}
			arm()
		case err := <-observed:
			if errors.Is(err, errLeadershipLost) {
				return "another leader"
			}
			if ctx.Err() != nil {
				continue // the next pass returns
			}
			// Observe could not read the election (its calls retry
			// for a while first): this leader does not know that it
			// lost, so it keeps leading while its session holds.
			go func() {
				t := time.NewTimer(contendPause)
				defer t.Stop()
				select {
				case <-t.C:
					observe()
				case <-octx.Done():
				}
			}()
		}
	}
}
