package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// fenceUsage is the help of --fence on the tree's writes.
const fenceUsage = `NAME:TOKEN: write only while TOKEN still leads the election or holds the lock NAME ` +
	`(elections/E or locks/L), else fail with FailedPrecondition "fence lost" and change nothing`

// addFenceFlag registers --fence on a tree write command; the pointer's
// value is parsed by parseFence.
func addFenceFlag(cmd *cobra.Command) *string {
	var s string
	cmd.Flags().StringVar(&s, "fence", "", fenceUsage)
	return &s
}

// parseFence parses --fence NAME:TOKEN, split at the last colon (so that
// NAME itself may hold one): NAME is "elections/E" or "locks/L", TOKEN
// the fencing token that paddock elect and paddock lock put in
// PADDOCK_ELECTION_TOKEN and PADDOCK_LOCK_TOKEN. "" is no fence. Which
// names exist is the cluster's to say (InvalidArgument).
func parseFence(s string) (*paddockv1.Fence, error) {
	if s == "" {
		return nil, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return nil, fmt.Errorf("bad --fence %q: want NAME:TOKEN (elections/batch:$PADDOCK_ELECTION_TOKEN)", s)
	}
	name, tok := s[:i], s[i+1:]
	if name == "" {
		return nil, fmt.Errorf("bad --fence %q: no NAME before the colon: want elections/E:TOKEN or locks/L:TOKEN", s)
	}
	if tok == "" {
		return nil, fmt.Errorf("bad --fence %q: no TOKEN after the colon (is $PADDOCK_ELECTION_TOKEN or $PADDOCK_LOCK_TOKEN set?)", s)
	}
	token, err := strconv.ParseUint(tok, 10, 64)
	if err != nil || token == 0 {
		return nil, fmt.Errorf("bad --fence %q: TOKEN %q is not a fencing token (a positive integer)", s, tok)
	}
	return &paddockv1.Fence{Name: name, Token: token}, nil
}
