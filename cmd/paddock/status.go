package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// newStatusCmd returns `paddock status`: the state of the first reachable
// node and the cluster's members; with --state-hash, also a digest of the
// node's whole state and the applied index it was taken at.
func newStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the serving node's raft state and the cluster's members",
		Args:  cobra.NoArgs,
	}
	o := newClientOptions(cmd)
	var stateHash bool
	cmd.Flags().BoolVar(&stateHash, "state-hash", false, "also show a digest of the node's whole state and the applied index it was taken at (a pass over the whole tree)")
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error {
		c, ctx, done, err := o.connect(cmd)
		if err != nil {
			return err
		}
		defer done()
		st, err := c.Status(ctx, &paddockv1.StatusRequest{StateHash: stateHash})
		if err != nil {
			return err
		}
		members, err := c.Members(ctx, &paddockv1.MembersRequest{})
		if err != nil {
			return err
		}
		if o.output == "json" {
			return writeStatusJSON(cmd.OutOrStdout(), st, members)
		}
		return writeStatus(cmd.OutOrStdout(), st, members)
	})
	return cmd
}

// writeStatusJSON writes {"status": StatusResponse, "members": MembersResponse}.
func writeStatusJSON(w io.Writer, st *paddockv1.StatusResponse, members *paddockv1.MembersResponse) error {
	var doc struct {
		Status  json.RawMessage `json:"status"`
		Members json.RawMessage `json:"members"`
	}
	var err error
	if doc.Status, err = jsonOptions.Marshal(st); err != nil {
		return err
	}
	if doc.Members, err = jsonOptions.Marshal(members); err != nil {
		return err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

// writeStatus writes the node's state, a blank line and a table of members.
func writeStatus(w io.Writer, st *paddockv1.StatusResponse, members *paddockv1.MembersResponse) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	role := strings.ToLower(strings.TrimPrefix(st.Role.String(), "ROLE_"))
	leader := st.LeaderId
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(tw, "node\t%s\n", st.Id)
	fmt.Fprintf(tw, "role\t%s\n", role)
	fmt.Fprintf(tw, "leader\t%s\n", leader)
	fmt.Fprintf(tw, "term\t%d\n", st.Term)
	fmt.Fprintf(tw, "commit\t%d\n", st.CommitIndex)
	fmt.Fprintf(tw, "applied\t%d\n", st.AppliedIndex)
	fmt.Fprintf(tw, "znodes\t%d\n", st.Znodes)
	fmt.Fprintf(tw, "sessions\t%d\n", st.Sessions)
	fmt.Fprintf(tw, "ready\t%t\n", st.Ready)
	if len(st.StateHash) > 0 {
		fmt.Fprintf(tw, "state hash\t%x at index %d\n", st.StateHash, st.StateHashIndex)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT\tGRPC\tHTTP\tVOTER\tLEADER\tLEVEL")
	for _, m := range members.Members {
		level := "-"
		if m.FeatureLevel > 0 {
			level = fmt.Sprint(m.FeatureLevel)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%t\t%s\n",
			m.Id, orDash(m.RaftAddr), orDash(m.GrpcAddr), orDash(m.HttpAddr), m.Voter, m.Leader, level)
	}
	return tw.Flush()
}

// orDash shows an address a member has not registered yet as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
