package robust

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/e2e/robust/check"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// The parents of the TTL and container workload's znodes.
const (
	ttlParent = "/ttl"
	ctrParent = "/ctr"
	// maxIdle bounds the TTL and container znodes one run makes.
	maxIdle = 16
)

// idlePlan is what the TTL and container workload does with one znode.
type idlePlan struct {
	// ttl makes a TTL znode; 0 a container.
	ttl time.Duration
	// sets is how many times a TTL znode's data is set, ttl/2 apart.
	sets int
	// children is how many children it gets (a container with none is
	// never to be deleted); hold is how long they live, the last one
	// twice that.
	children int
	hold     time.Duration
}

// idles starts a TTL or container znode's life every 300-700 ms until
// stop; each runs its whole plan, stop or not, so that every znode ends
// with no children. ended is done when they all have.
func idles(ctx context.Context, rec *recorder, cl *client.Client, rng *rand.Rand, stop <-chan struct{}, ended *sync.WaitGroup) {
	for k := 0; k < maxIdle; k++ {
		var plan idlePlan
		if rng.IntN(100) < 60 {
			plan.ttl = time.Duration(1000+rng.IntN(2)*500) * time.Millisecond
			switch p := rng.IntN(3); p {
			case 1:
				plan.sets = 2 + rng.IntN(3)
			case 2:
				plan.children = 1
			}
		} else if rng.IntN(4) > 0 {
			plan.children = 1 + rng.IntN(2)
		}
		plan.hold = time.Duration(300+rng.IntN(1200)) * time.Millisecond
		ended.Add(1)
		go func() {
			defer ended.Done()
			runIdle(ctx, rec, cl, k, plan)
		}()
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(300+rng.IntN(400)) * time.Millisecond):
		}
	}
}

// idleCall makes one call and records it; it reports whether the call
// was acknowledged.
func idleCall(ctx context.Context, rec *recorder, path string, list *[]check.Call, f func(context.Context) error) bool {
	c := check.Call{Path: path, Call: rec.now()}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	err := f(cctx)
	cancel()
	c.Return, c.Outcome = rec.now(), outcome(err)
	if unexpected(err) {
		rec.addUnexpected("%s: %v", path, err)
		return false
	}
	if ctx.Err() != nil && err != nil {
		return false // the run is over
	}
	rec.mu.Lock()
	*list = append(*list, c)
	rec.mu.Unlock()
	return c.Outcome == check.OK
}

func runIdle(ctx context.Context, rec *recorder, cl *client.Client, k int, plan idlePlan) {
	n := &check.IdleNode{TTL: plan.ttl}
	req := &paddockv1.CreateRequest{Type: paddockv1.NodeType_NODE_TYPE_CONTAINER}
	n.Path = fmt.Sprintf("%s/c%d", ctrParent, k)
	if plan.ttl > 0 {
		n.Path = fmt.Sprintf("%s/t%d", ttlParent, k)
		req = &paddockv1.CreateRequest{Type: paddockv1.NodeType_NODE_TYPE_TTL, TtlMs: plan.ttl.Milliseconds()}
	}
	req.Path = n.Path
	var created []check.Call
	ok := idleCall(ctx, rec, n.Path, &created, func(ctx context.Context) error {
		_, err := cl.Create(ctx, req)
		return err
	})
	if len(created) == 0 || created[0].Outcome == check.NotFound || created[0].Outcome == check.Exists {
		return // the run ended, or a bug the watches and state checks see
	}
	n.Created = created[0]
	rec.mu.Lock()
	rec.idle = append(rec.idle, n)
	rec.mu.Unlock()
	if !ok {
		return // unknown: nothing more to time
	}
	for i := range plan.sets {
		if !sleep(ctx, plan.ttl/2) {
			return
		}
		data := []byte(fmt.Sprintf("v%d", i))
		if !idleCall(ctx, rec, n.Path, &n.Sets, func(ctx context.Context) error {
			_, err := cl.Set(ctx, &paddockv1.SetRequest{Path: n.Path, Data: data})
			return err
		}) {
			return
		}
	}
	var kids []string
	for i := range plan.children {
		kid := fmt.Sprintf("%s/k%d", n.Path, i)
		if !idleCall(ctx, rec, kid, &n.ChildCreates, func(ctx context.Context) error {
			_, err := cl.Create(ctx, &paddockv1.CreateRequest{Path: kid})
			return err
		}) {
			return
		}
		kids = append(kids, kid)
	}
	for i, kid := range kids {
		hold := plan.hold
		if i == len(kids)-1 {
			hold *= 2
		}
		if !sleep(ctx, hold) {
			return
		}
		idleCall(ctx, rec, kid, &n.ChildDeletes, func(ctx context.Context) error {
			_, err := cl.Delete(ctx, &paddockv1.DeleteRequest{Path: kid})
			return err
		})
	}
}

// idleDeadline is when a TTL or container znode of the workload is due to
// be gone at the latest, counted from its last acknowledged change (no
// leader change counted), and whether it is due to go at all.
func idleDeadline(n *check.IdleNode) (time.Duration, bool) {
	last := n.Created.Return
	for _, c := range append(append([]check.Call(nil), n.Sets...), n.ChildDeletes...) {
		last = max(last, c.Return)
	}
	if n.TTL == 0 && len(n.ChildCreates) == 0 {
		return 0, false
	}
	return last + n.TTL + electionTimeout + time.Second, true
}
