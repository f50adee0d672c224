package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// eventKindNames are the --kinds names of the event kinds, which are also
// how text output prints them.
var eventKindNames = map[paddockv1.EventKind]string{
	paddockv1.EventKind_EVENT_KIND_CREATED:          "created",
	paddockv1.EventKind_EVENT_KIND_DATA_CHANGED:     "data_changed",
	paddockv1.EventKind_EVENT_KIND_DELETED:          "deleted",
	paddockv1.EventKind_EVENT_KIND_CHILDREN_CHANGED: "children_changed",
}

func newTreeWatchCmd(o *clientOptions) *cobra.Command {
	var (
		recursive, prevData bool
		from                uint64
		kinds               string
	)
	cmd := &cobra.Command{
		Use:   "watch [--recursive] [--from ZXID] [--kinds K,...] [--prev-data] PATH",
		Short: "Print the changes to a znode (or subtree) as they happen, one per line",
		Long: `Print the changes to a znode, or with --recursive to its whole subtree, one
event per line, until SIGINT or SIGTERM (then exit 0).

Text lines read "ZXID KIND PATH", then version= and data_length= of the
znode after the change (not for deletes) and, with --prev-data,
prev_data_length= for sets and deletes. With -o json every line is one Event
as JSON (NDJSON).

Events come in zxid order, each once: when the node serving the watch goes
away the watch resumes on another endpoint from the last zxid printed. If
the cluster no longer holds the events after that zxid (history compacted,
snapshot installed), the command fails: re-read the state, then watch again
with --from.`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&recursive, "recursive", false, "watch every znode below PATH too")
	cmd.Flags().Uint64Var(&from, "from", 0, "first zxid to print events of (0: changes from now on)")
	cmd.Flags().StringVar(&kinds, "kinds", "", "comma-separated kinds to print: created, data_changed, deleted, children_changed (default all)")
	cmd.Flags().BoolVar(&prevData, "prev-data", false, "ask for the data before each set and delete")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		ks, err := parseKinds(kinds)
		if err != nil {
			return err
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		w, err := c.Watch(ctx, args[0], client.WatchOptions{
			Recursive: recursive,
			Kinds:     ks,
			StartZxid: from,
			PrevData:  prevData,
			// Progress every 5s keeps the resume point current when
			// nothing matches, and lets the client notice a node that
			// hangs without closing the connection (no response for
			// 16s) and move on.
			ProgressInterval: 5 * time.Second,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted while connecting
			}
			return err
		}
		defer w.Close()
		out := cmd.OutOrStdout()
		for resp := range w.Responses() {
			for _, ev := range resp.Events {
				if err := writeEvent(out, o.output, prevData, ev); err != nil {
					return err
				}
			}
		}
		if ctx.Err() != nil {
			return nil // a signal (or the caller) ended the watch
		}
		return w.Err()
	})
	return cmd
}

// parseKinds parses --kinds: comma-separated kind names, "-" or "_" between
// words, any case, with or without the enum's EVENT_KIND_ prefix (the
// spelling of the HTTP API and -o json). Empty means every kind.
func parseKinds(s string) ([]paddockv1.EventKind, error) {
	var out []paddockv1.EventKind
	for name := range strings.SplitSeq(s, ",") {
		name = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "-", "_")
		name = strings.TrimPrefix(name, "event_kind_")
		if name == "" {
			continue
		}
		kind := paddockv1.EventKind_EVENT_KIND_UNSPECIFIED
		for k, n := range eventKindNames {
			if n == name {
				kind = k
			}
		}
		if kind == paddockv1.EventKind_EVENT_KIND_UNSPECIFIED {
			return nil, fmt.Errorf("bad --kinds %q: want created, data_changed, deleted or children_changed", s)
		}
		out = append(out, kind)
	}
	return out, nil
}

// writeEvent writes ev as one line: "ZXID KIND PATH ..." for text output,
// compact JSON for json (so that the stream is NDJSON). prevData says the
// watch asked for previous data, so that sets and deletes show its length
// even when it is empty (and so absent on the wire).
func writeEvent(w io.Writer, output string, prevData bool, ev *paddockv1.Event) error {
	if output == "json" {
		b, err := jsonOptions.Marshal(ev)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err = w.Write(buf.Bytes())
		return err
	}
	kind, ok := eventKindNames[ev.Kind]
	if !ok {
		kind = ev.Kind.String()
	}
	line := fmt.Sprintf("%d %s %s", ev.Zxid, kind, ev.Path)
	if st := ev.GetStat(); st != nil {
		line += fmt.Sprintf(" version=%d data_length=%d", st.GetVersion(), st.GetDataLength())
	}
	if prevData && (ev.Kind == paddockv1.EventKind_EVENT_KIND_DATA_CHANGED || ev.Kind == paddockv1.EventKind_EVENT_KIND_DELETED) {
		line += fmt.Sprintf(" prev_data_length=%d", len(ev.PrevData))
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
