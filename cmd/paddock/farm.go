package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/paddock/paddock/client"
	"github.com/paddock/paddock/farm"
	"github.com/paddock/paddock/fsm"
	paddockv1 "github.com/paddock/paddock/proto/paddock/v1"
)

// newFarmCmd returns `paddock farm` and its subcommands: ZkFarmer's
// command line on Paddock, so that `zkfarmer` can be replaced by
// `paddock farm` in service scripts.
func newFarmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "farm",
		Short: "Farms of hosts: register, export, list, read and change their configuration (ZkFarmer's commands)",
	}
	o := newFarmOptions(cmd)
	cmd.AddCommand(
		newFarmJoinCmd(o, false),
		newFarmJoinCmd(o, true),
		newFarmExportCmd(o),
		newFarmLsCmd(o),
		newFarmGetCmd(o),
		newFarmSetCmd(o),
		newFarmUnsetCmd(o),
		newFarmCheckCmd(o),
		newFarmExecCmd(o),
	)
	return cmd
}

// farmArgs checks the argument count and that the first argument is a
// znode's full path, as zkfarmer does.
func farmArgs(minN, maxN int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(minN, maxN)(cmd, args); err != nil {
			return err
		}
		if !strings.HasPrefix(args[0], "/") {
			return fmt.Errorf("paddock: bad path %q: the first argument must be the full path of the znode (eg: /services/db)", args[0])
		}
		return nil
	}
}

// checkZnodePath refuses a path no znode can have (not UTF-8, a control
// character, a . or .. segment), in the words of the tree's own check:
// join and export would otherwise retry it until killed.
func checkZnodePath(p string) error {
	err := fsm.ValidatePath(p, false)
	var fe *fsm.Error
	if errors.As(err, &fe) && fe.Detail != "" {
		return errors.New(fe.Detail)
	}
	return err
}

// znodeArg is args[0] without trailing slashes (zkfarmer strips them too).
// Nothing else is cleaned: "/a/../b" must be refused as a bad path, not
// quietly read as "/b".
func znodeArg(args []string) string {
	p := args[0]
	for len(p) > 1 && strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	return p
}

// textOnly refuses -o json for the commands that print nothing to render.
func (o *farmOptions) textOnly(cmd *cobra.Command) error {
	if o.output == "json" {
		return fmt.Errorf("farm %s has no JSON output: drop -o json", cmd.Name())
	}
	return nil
}

// exitCodeError ends the process with its code and prints nothing more:
// the command has printed its outcome (check's Nagios line).
type exitCodeError int

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// signalContext is the command's context, also ended by SIGINT and
// SIGTERM: join, import and export run until then.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

// stoppedBySignal reports whether a long-running command that returned
// err ended because held did (a signal): that is a clean exit.
func stoppedBySignal(held context.Context, err error) bool {
	return held.Err() != nil && (err == nil || errors.Is(err, context.Canceled))
}

// changedCommand is --changed-cmd as a callback: cmdline run by `sh -c`,
// its output on stderr; a failure is logged, never fatal. When ctx ends
// (SIGINT, SIGTERM) a command still running is killed, and its output no
// longer waited for after changedWaitDelay (a child it left behind may hold
// it), so that join and export stop rather than wait on it.
func changedCommand(ctx context.Context, cmdline string, stderr io.Writer, log *slog.Logger) func() {
	if cmdline == "" {
		return nil
	}
	return func() {
		c := exec.CommandContext(ctx, "sh", "-c", cmdline)
		c.Stdout, c.Stderr = stderr, stderr
		c.WaitDelay = changedWaitDelay
		start := time.Now()
		if err := c.Run(); err != nil {
			log.Warn("changed command failed", "cmd", cmdline, "err", err)
			return
		}
		log.Info("changed command ran", "cmd", cmdline, "took", time.Since(start).Round(time.Millisecond))
	}
}

// inBackground runs fn on a goroutine of its own until ctx ends, once
// after each call of the func it returns, coalesced: calls made while fn
// runs make it run once more afterwards, never more. join uses it so a
// slow --changed-cmd never holds up the sync of the host's configuration
// (export runs its command in line, as consul-template does: its next
// write waits for the command). nil stays nil.
func inBackground(ctx context.Context, fn func()) func() {
	if fn == nil {
		return nil
	}
	kick := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
				fn()
			}
		}
	}()
	return func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
}

// changedWaitDelay bounds the wait for a killed changed command's output.
const changedWaitDelay = time.Second

// heldSessions opens the sessions Join asks for and closes those still
// open when the command stops.
type heldSessions struct {
	c       *client.Client
	timeout time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	sessions []*client.Session
}

// open is JoinConfig.NewSession.
func (h *heldSessions) open(ctx context.Context) (farm.Session, error) {
	s, err := h.c.NewSession(ctx, h.timeout, client.OnConnectionState(func(cs client.ConnState) {
		switch cs.State {
		case client.StateDisconnected:
			h.log.Warn("session disconnected, retrying", "since", cs.Since.Format(time.RFC3339))
		case client.StateConnected:
			h.log.Info("session connected again")
		}
	}))
	if err != nil {
		return nil, err
	}
	h.log.Debug("session opened", "id", s.ID(), "timeout", s.Timeout())
	h.mu.Lock()
	h.sessions = append(h.sessions, s)
	h.mu.Unlock()
	return s, nil
}

// closeAll closes the sessions that have not ended, deleting their
// ephemeral znodes at once rather than after the session timeout.
func (h *heldSessions) closeAll(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, s := range h.sessions {
		select {
		case <-s.Done():
			continue
		default:
		}
		if err := s.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// joinFlags are the flags of join and import.
type joinFlags struct {
	format, name, hostname, changedCmd string
	common                             bool
	sessionTimeout                     time.Duration
}

// config checks the flags and returns Join's configuration, without the
// cluster parts.
func (f *joinFlags) config(cmd *cobra.Command, args []string, oneWay bool) (farm.JoinConfig, error) {
	cfg := farm.JoinConfig{Farm: znodeArg(args), Conf: args[1], Common: f.common, OneWay: oneWay}
	if f.sessionTimeout <= 0 {
		return cfg, fmt.Errorf("bad --session-timeout %v: want > 0", f.sessionTimeout)
	}
	format, err := farm.FormatFor(cfg.Conf, f.format)
	if err != nil {
		return cfg, err
	}
	cfg.Format = format
	cfg.Name = f.name
	if !f.common && !cmd.Flags().Changed("name") {
		if cfg.Name, err = farm.DefaultName(); err != nil {
			return cfg, err
		}
	}
	if !f.common && (cfg.Name == "" || strings.Contains(cfg.Name, "/") || cfg.Name == farm.CommonName) {
		return cfg, fmt.Errorf("bad --name %q: want a znode name, not %q and without /", cfg.Name, farm.CommonName)
	}
	if err := checkZnodePath(cfg.Farm); err != nil {
		return cfg, fmt.Errorf("bad path %q: %w", args[0], err)
	}
	if !f.common {
		if err := checkZnodePath(strings.TrimSuffix(cfg.Farm, "/") + "/" + cfg.Name); err != nil {
			return cfg, fmt.Errorf("bad --name %q: %w", cfg.Name, err)
		}
	}
	// FARM/common is no host's, and import never writes to CONF (Join
	// sets no hostname for either): refuse --hostname there rather than
	// drop it unsaid. import has no such flag.
	if f.common && cmd.Flags().Changed("hostname") {
		return cfg, fmt.Errorf("bad --hostname %q: FARM/common is no host's: it gets no hostname (drop --hostname, or put hostname in CONF)", f.hostname)
	}
	if oneWay || f.common {
		return cfg, nil
	}
	cfg.Hostname = f.hostname
	if !cmd.Flags().Changed("hostname") {
		if cfg.Hostname, err = os.Hostname(); err != nil {
			return cfg, fmt.Errorf("hostname: %w (give --hostname)", err)
		}
	}
	return cfg, nil
}

// newFarmJoinCmd returns `farm join`, or `farm import` (one way, local to
// farm) when oneWay is set.
func newFarmJoinCmd(o *farmOptions, oneWay bool) *cobra.Command {
	f := &joinFlags{}
	cmd := &cobra.Command{
		Use:   "join FARM CONF [-f json|yaml|php|dir] [-c] [--name NAME] [--hostname H] [--changed-cmd CMD]",
		Short: "Register this host in FARM with CONF, and keep both in sync until killed",
		Long: `Register this host in FARM with the configuration CONF (a file, or a DJB
directory: each directory a dict, each file a key whose trimmed content is
the value) and keep both in sync, both ways, until SIGINT or SIGTERM: a
local change reaches the host's znode within a second; a change of the
znode (farm set from anywhere) is written to CONF, then --changed-cmd runs.

The host's znode FARM/NAME is ephemeral, owned by a session: it goes when
the command stops (at once on SIGINT/SIGTERM, after --session-timeout if
the process dies). NAME defaults to the IPv4 address of the default route.
--common keeps the persistent FARM/common instead. Without -f, CONF's
format comes from CONF: a directory is dir, else its extension.`,
		Args: farmArgs(2, 2),
	}
	if oneWay {
		cmd.Use = "import FARM CONF [-f json|yaml|php|dir] [-c] [--name NAME]"
		cmd.Short = "Register this host in FARM with CONF, copying local changes to the farm only, until killed"
		cmd.Long = `Like join, one way: changes of CONF reach the farm, changes of the farm
are not written to CONF.`
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.format, "format", "f", "", "CONF's format: json, yaml, php or dir (default: inferred from CONF)")
	fs.BoolVarP(&f.common, "common", "c", false, "keep the persistent FARM/common instead of this host's znode")
	fs.StringVar(&f.name, "name", "", "the host's znode name (default: the IPv4 address of the default route)")
	fs.DurationVar(&f.sessionTimeout, "session-timeout", 10*time.Second, "timeout of the session owning the host's znode")
	if !oneWay {
		fs.StringVar(&f.hostname, "hostname", "", "hostname field set when CONF has none (default: this host's name; refused with --common)")
		fs.StringVar(&f.changedCmd, "changed-cmd", "", "run with sh -c after a change of the farm was written to CONF")
	}
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if err := o.textOnly(cmd); err != nil {
			return err
		}
		cfg, err := f.config(cmd, args, oneWay)
		if err != nil {
			return err
		}
		log, err := o.logger(cmd, true)
		if err != nil {
			return err
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		held, stop := signalContext(cmd)
		defer stop()
		sessions := &heldSessions{c: c, timeout: f.sessionTimeout, log: log}
		cfg.Tree, cfg.NewSession, cfg.Log = c, sessions.open, log
		// In the background: a slow command must not hold up the sync.
		cfg.OnChanged = inBackground(held, changedCommand(held, f.changedCmd, cmd.ErrOrStderr(), log))
		err = farm.Join(held, cfg)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(held), o.timeout)
		defer cancel()
		closeErr := sessions.closeAll(closeCtx)
		if stoppedBySignal(held, err) {
			return closeErr
		}
		return o.explain(err)
	})
	return cmd
}

// parseWait parses --wait MIN:MAX as consul-template does: durations,
// "2s:10s"; one value is MIN, with MAX four times MIN.
func parseWait(s string) (minWait, maxWait time.Duration, err error) {
	if s == "" {
		return 0, 0, nil
	}
	lo, hi, two := strings.Cut(s, ":")
	if minWait, err = time.ParseDuration(strings.TrimSpace(lo)); err != nil {
		return 0, 0, fmt.Errorf("bad --wait %q: want MIN[:MAX] durations (2s:10s)", s)
	}
	maxWait = 4 * minWait
	if two {
		if maxWait, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil {
			return 0, 0, fmt.Errorf("bad --wait %q: want MIN[:MAX] durations (2s:10s)", s)
		}
	}
	if minWait < 0 || maxWait < minWait {
		return 0, 0, fmt.Errorf("bad --wait %q: want 0 <= MIN <= MAX", s)
	}
	return minWait, maxWait, nil
}

// exportFlags are the flags of export.
type exportFlags struct {
	format, changedCmd, filters, wait string
	once                              bool
}

// config checks the flags and returns Export's configuration, without
// the cluster parts.
func (f *exportFlags) config(args []string) (farm.ExportConfig, error) {
	cfg := farm.ExportConfig{Farm: znodeArg(args), Dest: args[1], Once: f.once}
	if err := checkZnodePath(cfg.Farm); err != nil {
		return cfg, fmt.Errorf("bad path %q: %w", args[0], err)
	}
	var err error
	if cfg.Format, err = farm.FormatFor(cfg.Dest, f.format); err != nil {
		return cfg, err
	}
	if cfg.Filter, err = farm.ParseFilter(f.filters); err != nil {
		return cfg, err
	}
	if cfg.WaitMin, cfg.WaitMax, err = parseWait(f.wait); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func newFarmExportCmd(o *farmOptions) *cobra.Command {
	f := &exportFlags{}
	cmd := &cobra.Command{
		Use:   "export FARM DEST [-f json|yaml|php|dir] [-c CMD] [-F PRED,...] [--wait MIN:MAX] [--once]",
		Short: "Keep DEST equal to FARM's hosts and their configuration, until killed",
		Long: `Keep DEST holding {host name: configuration} for every host of FARM that
passes the filters, until SIGINT or SIGTERM (or once with --once). DEST is
rewritten atomically, and --changed-cmd run, only when its content changed.
Without -f, the format comes from DEST: an existing directory is dir, else
.php, .json, .yaml or .yml. While the cluster is unreachable DEST keeps the
last farm read.`,
		Args: farmArgs(2, 2),
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.format, "format", "f", "", "DEST's format: json, yaml, php or dir (default: inferred from DEST)")
	fs.StringVarP(&f.changedCmd, "changed-cmd", "c", "", "run with sh -c each time DEST changed")
	fs.StringVarP(&f.filters, "filters", "F", "", "export only the hosts matching these predicates, comma-separated (enabled=1,replication_delay<10,!maintenance)")
	fs.StringVar(&f.wait, "wait", "", "MIN[:MAX]: write DEST once the farm was quiet for MIN, MAX after the first change at the latest (one value: MAX = 4*MIN)")
	fs.BoolVar(&f.once, "once", false, "write DEST once and exit")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		if err := o.textOnly(cmd); err != nil {
			return err
		}
		cfg, err := f.config(args)
		if err != nil {
			return err
		}
		log, err := o.logger(cmd, true)
		if err != nil {
			return err
		}
		c, err := o.dialWith(cmd, client.Config{ReadAttemptTimeout: farm.ReadAttempt})
		if err != nil {
			return err
		}
		defer c.Close()
		held, stop := signalContext(cmd)
		defer stop()
		stats := &farm.ExportStats{}
		cfg.Tree, cfg.Log, cfg.Stats = c, log, stats
		cfg.OnChanged = changedCommand(held, f.changedCmd, cmd.ErrOrStderr(), log)
		err = farm.Export(held, cfg)
		// What it read and wrote, for `paddock bench farm` and anyone
		// checking that a change costs one host's read.
		log.Info("farm: export: stopped", "full_reads", stats.FullReads.Load(),
			"host_reads", stats.HostReads.Load(), "writes", stats.Writes.Load())
		if stoppedBySignal(held, err) {
			return nil
		}
		return o.explain(err)
	})
	return cmd
}

// parseFields splits --fields, checking each dotted path.
func parseFields(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var fields []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if err := (farm.Conf{}).SetField(f, ""); err != nil {
			return nil, err
		}
		fields = append(fields, f)
	}
	return fields, nil
}

// lsHost is one line of `farm ls -o json`.
type lsHost struct {
	Name   string         `json:"name"`
	Fields map[string]any `json:"fields,omitempty"`
}

func newFarmLsCmd(o *farmOptions) *cobra.Command {
	var fieldsFlag, filtersFlag string
	cmd := &cobra.Command{
		Use:   "ls PATH [--fields a,b.c] [-F PRED,...]",
		Short: "List the children of PATH (the hosts of a farm), with fields",
		Long: `List the children of PATH, one name a line. With --fields, each line is
the name padded to 20 columns (never cut) and the fields as k=v (None
when missing); with -F, only the children whose configuration matches
the predicates are listed. A PATH that does not exist lists nothing, as
in zkfarmer.`,
		Args: farmArgs(1, 1),
	}
	cmd.Flags().StringVar(&fieldsFlag, "fields", "", "comma-separated dotted fields to print after each name")
	cmd.Flags().StringVarP(&filtersFlag, "filters", "F", "", "list only the children matching these predicates, comma-separated (enabled=1,!maintenance)")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		fields, err := parseFields(fieldsFlag)
		if err != nil {
			return err
		}
		filter, err := farm.ParseFilter(filtersFlag)
		if err != nil {
			return err
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		var snap *farm.Snapshot
		err = o.oneShot(cmd, func(ctx context.Context) (err error) {
			snap, err = farm.Read(ctx, c, znodeArg(args), nil)
			return err
		})
		if err != nil {
			return o.explain(err)
		}
		var hosts []lsHost
		for _, name := range slices.Sorted(maps.Keys(snap.Hosts)) {
			conf := snap.Hosts[name].Conf
			if !filter.Match(conf) {
				continue
			}
			h := lsHost{Name: name}
			if len(fields) > 0 {
				h.Fields = make(map[string]any, len(fields))
				for _, f := range fields {
					v, _ := conf.Lookup(f)
					h.Fields[f] = v
				}
			}
			hosts = append(hosts, h)
		}
		if o.output == "json" {
			if hosts == nil {
				hosts = []lsHost{}
			}
			return writeJSONValue(cmd.OutOrStdout(), map[string]any{"zxid": snap.Zxid, "children": hosts})
		}
		w := cmd.OutOrStdout()
		for _, h := range hosts {
			if len(fields) == 0 || len(snap.Hosts[h.Name].Conf) == 0 {
				// zkfarmer prints a bare name for a child without configuration.
				fmt.Fprintln(w, h.Name)
				continue
			}
			kv := make([]string, len(fields))
			for i, f := range fields {
				v, ok := snap.Hosts[h.Name].Conf.Lookup(f)
				kv[i] = f + "=" + farm.ValueString(v, ok)
			}
			fmt.Fprintf(w, "%-20s %s\n", h.Name, strings.Join(kv, ", "))
		}
		return nil
	})
	return cmd
}

// writeJSONValue writes v as indented JSON and a newline, numbers kept as
// stored.
func writeJSONValue(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

func newFarmGetCmd(o *farmOptions) *cobra.Command {
	var formatName string
	cmd := &cobra.Command{
		Use:   "get NODE [FIELD] [-f yaml|json|php]",
		Short: "Print a host's (or a farm's) configuration, or one field of it",
		Long: `Print the configuration held by NODE (a host, or a farm's own properties)
in the format of -f (yaml by default, as zkfarmer), or with FIELD (a
dotted path) only that field's value: strings as they are, numbers as
written, dicts and lists as JSON, None when missing. With -o json, the
configuration or the value as JSON (null when missing).`,
		Args: farmArgs(1, 2),
	}
	cmd.Flags().StringVarP(&formatName, "format", "f", "yaml", "output format of the whole configuration: yaml, json or php")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		var field string
		if len(args) == 2 {
			field = args[1]
			if err := (farm.Conf{}).SetField(field, ""); err != nil {
				return err
			}
		}
		formatSet := cmd.Flags().Changed("format")
		if o.output == "json" && formatSet {
			return errors.New("-o json and -f cannot be used together")
		}
		var format farm.Format
		if (field == "" && o.output != "json") || formatSet {
			f, err := farm.ParseFormat(formatName)
			if err != nil {
				return err
			}
			if f.Name() == "dir" {
				return fmt.Errorf("%w: get cannot print dir: want yaml, json or php", farm.ErrBadFormat)
			}
			format = f
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		node := znodeArg(args)
		var conf farm.Conf
		err = o.oneShot(cmd, func(ctx context.Context) error {
			g, err := c.Get(ctx, &paddockv1.GetRequest{Path: node})
			if err != nil {
				return err
			}
			if conf, err = farm.DecodeConf(g.GetData()); err != nil {
				return fmt.Errorf("%s: %w", node, err)
			}
			return nil
		})
		if err != nil {
			return o.explain(err)
		}
		w := cmd.OutOrStdout()
		switch {
		case field != "" && o.output == "json":
			v, _ := conf.Lookup(field)
			return writeJSONValue(w, v)
		case field != "":
			_, err := fmt.Fprintln(w, farm.ValueString(conf.Lookup(field)))
			return err
		case o.output == "json":
			return writeJSONValue(w, conf)
		}
		b, err := format.Encode(conf)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	return cmd
}

func newFarmSetCmd(o *farmOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set NODE FIELD VALUE",
		Short: "Set a field of a host (or farm) to VALUE; dotted fields create sub-dicts",
		Long: `Set the dotted FIELD of NODE's configuration to the string VALUE, by
compare-and-set with retry: a concurrent set of another field is never
lost. A joined host writes the change to its local configuration.`,
		Args: farmArgs(3, 3),
	}
	cmd.RunE = o.fieldChange(func(ctx context.Context, c farm.Tree, args []string) error {
		_, err := farm.SetField(ctx, c, znodeArg(args), args[1], args[2])
		return err
	})
	return cmd
}

// fieldChange is the body of set and unset: check the field (args[1])
// before dialling, then run change as a one-shot command.
func (o *farmOptions) fieldChange(change func(ctx context.Context, c farm.Tree, args []string) error) func(*cobra.Command, []string) error {
	return runE(func(cmd *cobra.Command, args []string) error {
		if err := o.textOnly(cmd); err != nil {
			return err
		}
		if err := (farm.Conf{}).SetField(args[1], ""); err != nil {
			return err
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		return o.explain(o.oneShot(cmd, func(ctx context.Context) error {
			return change(ctx, c, args)
		}))
	})
}

func newFarmUnsetCmd(o *farmOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unset NODE FIELD",
		Short: "Remove a field (dotted paths work) of a host (or farm)",
		Args:  farmArgs(2, 2),
	}
	cmd.RunE = o.fieldChange(func(ctx context.Context, c farm.Tree, args []string) error {
		_, err := farm.UnsetField(ctx, c, znodeArg(args), args[1])
		return err
	})
	return cmd
}

// checkJSON is `farm check -o json`.
type checkJSON struct {
	Status  int    `json:"status"`
	Label   string `json:"label"`
	Message string `json:"message"`
	Size    int    `json:"size"`
	Running int    `json:"running"`
	Failing int    `json:"failing"`
}

func newFarmCheckCmd(o *farmOptions) *cobra.Command {
	var maxFailed, warn string
	cmd := &cobra.Command{
		Use:   "check FARM [-c MAX] [-w WARN]",
		Short: "Nagios check of a farm: failed hosts = size - running hosts",
		Long: `Check FARM's health for Nagios: failed = the farm's size property (the
most hosts ever seen, raised by join) minus the running hosts (those
matching the farm's running_filter property, all hosts without one;
common excluded). Prints "LABEL: message" and exits with the status:
0 OK, 1 WARNING (failed >= WARN), 2 CRITICAL (failed >= MAX), 3 UNKNOWN
(no size, a bad threshold, or the cluster could not be read). MAX and
WARN are a number of hosts or a percentage of size.`,
		Args: farmArgs(1, 1),
	}
	cmd.Flags().StringVarP(&maxFailed, "max-failed-node", "c", "10%", "failed hosts at which the farm is CRITICAL: a number or a percentage of size")
	cmd.Flags().StringVarP(&warn, "warn-failed-node", "w", "", "failed hosts at which the farm is WARNING (below MAX)")
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		r := o.check(cmd, znodeArg(args), maxFailed, warn)
		w := cmd.OutOrStdout()
		if o.output == "json" {
			err := writeJSONValue(w, checkJSON{Status: r.Status, Label: farm.StatusLabel(r.Status), Message: r.Message, Size: r.Size, Running: r.Running, Failing: r.Failing})
			if err != nil {
				return err
			}
		} else {
			fmt.Fprintf(w, "%s: %s\n", farm.StatusLabel(r.Status), r.Message)
		}
		if r.Status != farm.StatusOK {
			return exitCodeError(r.Status)
		}
		return nil
	})
	return cmd
}

// check reads the farm and judges it; a farm that cannot be read is
// UNKNOWN, as Nagios wants, with the error as the message.
func (o *farmOptions) check(cmd *cobra.Command, farmPath, maxFailed, warn string) farm.CheckResult {
	unknown := func(err error) farm.CheckResult {
		return farm.CheckResult{Status: farm.StatusUnknown, Message: cliError(err).Error()}
	}
	if o.output != "text" && o.output != "json" {
		return unknown(fmt.Errorf("bad --output %q: want text or json", o.output))
	}
	c, err := o.dial(cmd)
	if err != nil {
		return unknown(err)
	}
	defer c.Close()
	var snap *farm.Snapshot
	err = o.oneShot(cmd, func(ctx context.Context) (err error) {
		snap, err = farm.Read(ctx, c, farmPath, nil)
		return err
	})
	if err != nil {
		return unknown(o.explain(err))
	}
	return snap.Check(maxFailed, warn)
}
