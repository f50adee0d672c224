package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// fakeWatch scripts a fake node's WatchService: the event log it serves
// and how its streams end.
type fakeWatch struct {
	log         []*paddockv1.Event // in zxid order; several may share a zxid
	head        uint64             // the node's applied zxid: "now" and progress
	err         error              // every Watch fails with it at once
	breakAfter  int                // after this many event responses, end with breakErr
	breakErr    error
	progress    bool     // after the log, report progress at head
	ignoreStart bool     // serve the whole log whatever start_zxid says (a buggy node)
	batch       bool     // send the whole log in one response
	starts      []uint64 // start_zxid of every Watch received
}

// eventLog builds a log with one CREATED event of /w/<zxid> per zxid, and a
// second one (/w/<zxid>b) for each zxid in twice.
func eventLog(zxids []uint64, twice ...uint64) []*paddockv1.Event {
	var log []*paddockv1.Event
	for _, z := range zxids {
		ev := &paddockv1.Event{Zxid: z, Kind: paddockv1.EventKind_EVENT_KIND_CREATED, Path: fmt.Sprintf("/w/%d", z)}
		log = append(log, ev)
		for _, t := range twice {
			if t == z {
				log = append(log, &paddockv1.Event{Zxid: z, Kind: paddockv1.EventKind_EVENT_KIND_CREATED, Path: fmt.Sprintf("/w/%db", z)})
			}
		}
	}
	return log
}

// zxidRange returns from..to.
func zxidRange(from, to uint64) []uint64 {
	var out []uint64
	for z := from; z <= to; z++ {
		out = append(out, z)
	}
	return out
}

// canceled is the status a node ends a watch with, carrying a WatchCanceled
// detail.
func canceled(code codes.Code, wc *paddockv1.WatchCanceled) error {
	st, err := status.New(code, "node: watch canceled: "+wc.GetReason().String()).WithDetails(wc)
	if err != nil {
		panic(err) // a WatchCanceled always marshals
	}
	return st.Err()
}

// watchStarts returns the start_zxid of every Watch n received.
func (n *fakeNode) watchStarts() []uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]uint64(nil), n.watch.starts...)
}

// Watch follows the WatchService contract with a scripted log: created at
// start-1, then one response per zxid from start, then (optionally) a
// progress at head; it then holds the stream open until the client leaves
// or the server stops, unless breakAfter ends it first.
func (n *fakeNode) Watch(req *paddockv1.WatchRequest, stream grpc.ServerStreamingServer[paddockv1.WatchResponse]) error {
	n.mu.Lock()
	n.watch.starts = append(n.watch.starts, req.StartZxid)
	w := n.watch
	n.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	start := req.StartZxid
	if start == 0 {
		start = w.head + 1
	}
	hdr := func(z uint64) *paddockv1.ResponseHeader { return &paddockv1.ResponseHeader{NodeId: n.name, Zxid: z} }
	if err := stream.Send(&paddockv1.WatchResponse{Header: hdr(start - 1), Created: true}); err != nil {
		return err
	}
	from := start
	if w.ignoreStart {
		from = 0
	}
	if w.batch {
		var events []*paddockv1.Event
		for _, ev := range w.log {
			if ev.Zxid >= from {
				events = append(events, ev)
			}
		}
		if len(events) > 0 {
			if err := stream.Send(&paddockv1.WatchResponse{Header: hdr(events[len(events)-1].Zxid), Events: events}); err != nil {
				return err
			}
		}
	}
	sent := 0
	for i := 0; i < len(w.log) && !w.batch; {
		j := i
		for j < len(w.log) && w.log[j].Zxid == w.log[i].Zxid {
			j++
		}
		group := w.log[i:j]
		i = j
		if group[0].Zxid < from {
			continue
		}
		if w.breakAfter > 0 && sent == w.breakAfter {
			return w.breakErr
		}
		if err := stream.Send(&paddockv1.WatchResponse{Header: hdr(group[0].Zxid), Events: group}); err != nil {
			return err
		}
		sent++
	}
	if w.progress && w.head >= start {
		if err := stream.Send(&paddockv1.WatchResponse{Header: hdr(w.head), Progress: true}); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// Poll returns the log's events after after_zxid, up to head.
func (n *fakeNode) Poll(ctx context.Context, req *paddockv1.PollRequest) (*paddockv1.PollResponse, error) {
	if err := n.unary(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	w, hang := n.watch, n.hangPolls
	n.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if w.err != nil {
		return nil, w.err
	}
	resp := &paddockv1.PollResponse{Header: &paddockv1.ResponseHeader{NodeId: n.name, Zxid: max(w.head, req.AfterZxid)}}
	for _, ev := range w.log {
		if ev.Zxid > req.AfterZxid {
			resp.Events = append(resp.Events, ev)
			resp.Header.Zxid = max(resp.Header.Zxid, ev.Zxid)
		}
	}
	return resp, nil
}
