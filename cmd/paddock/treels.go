package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/paddock/paddock/client"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// listDataAttempts is how many times `tree ls --data` lists from the first
// page when the children change under it.
const listDataAttempts = 3

// listAllData reads every child of req.Path with its data at one zxid, as
// one response (the last page's header, the listing's zxid). A listing
// that changed between pages is started over, listDataAttempts times at
// most.
func listAllData(ctx context.Context, c *client.Client, req *paddockv1.ListRequest) (*paddockv1.ListResponse, error) {
	for attempt := 1; ; attempt++ {
		var all *paddockv1.ListResponse
		err := c.ListData(ctx, req, func(p *paddockv1.ListResponse) error {
			if all == nil {
				all = p
				return nil
			}
			all.Children = append(all.Children, p.Children...)
			all.Header, all.Stat, all.NextPageToken = p.Header, p.Stat, p.NextPageToken
			return nil
		})
		if err == nil || !client.IsListingChanged(err) || attempt == listDataAttempts {
			return all, err
		}
	}
}

// writeChildrenData writes a name, a tab and the data per child; long
// adds the -l columns between them.
func writeChildrenData(w io.Writer, children []*paddockv1.Child, long bool) error {
	if !long {
		for _, ch := range children {
			if _, err := fmt.Fprintf(w, "%s\t%s\n", ch.Name, printableData(ch.Data)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tDATA_LENGTH\tNUM_CHILDREN\tEPHEMERAL_OWNER\tDATA")
	for _, ch := range children {
		st := ch.GetStat()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", ch.Name, st.GetVersion(), st.GetDataLength(), st.GetNumChildren(), st.GetEphemeralOwner(), printableData(ch.Data))
	}
	return tw.Flush()
}

// printableData is data as is when it is UTF-8 without control characters
// (one line, no tab), else Go-quoted.
func printableData(data []byte) string {
	if !utf8.Valid(data) {
		return strconv.Quote(string(data))
	}
	for _, r := range string(data) {
		if unicode.IsControl(r) {
			return strconv.Quote(string(data))
		}
	}
	return string(data)
}
