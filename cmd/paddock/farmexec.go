package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock/paddock/farm"
)

// farmLockName is the lock `farm exec` takes without --lock: "farm" and
// the farm's path with every "/" turned into "_" (/services/web:
// farm_services_web), one znode name as lock names must be.
func farmLockName(farmPath string) string {
	return "farm" + strings.ReplaceAll(farmPath, "/", "_")
}

// fieldSetting is one -s FIELD=VALUE, and how to undo it: restore is the
// shortest prefix of field that the setting created or replaced (a dict
// it created on the way, or field itself), prev its value before when
// had.
type fieldSetting struct {
	field, value string
	restore      string
	prev         any
	had          bool // restore was there before: set it back to prev
	set          bool // the setting was written (so undo it)
}

// remember records in s how to undo setting s.field in c: the first
// prefix of the dotted field that is missing (SetField creates it) or not
// a dict (SetField replaces it), else the field itself.
func (s *fieldSetting) remember(c farm.Conf) {
	parts := strings.Split(s.field, ".")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], ".")
		v, ok := c.Lookup(p)
		if _, dict := v.(farm.Conf); !ok || !dict || i == len(parts) {
			s.restore, s.prev, s.had = p, v, ok
			return
		}
	}
}

// parseSettings parses the -s FIELD=VALUE flags, checking each dotted
// field.
func parseSettings(specs []string) ([]*fieldSetting, error) {
	var out []*fieldSetting
	for _, spec := range specs {
		field, value, ok := strings.Cut(spec, "=")
		if !ok || field == "" {
			return nil, fmt.Errorf("bad --set %q: want FIELD=VALUE (enabled=0)", spec)
		}
		if err := (farm.Conf{}).SetField(field, ""); err != nil {
			return nil, fmt.Errorf("bad --set %q: %w", spec, err)
		}
		out = append(out, &fieldSetting{field: field, value: value})
	}
	return out, nil
}

// Messages of zkfarmer exec's options that paddock does not have.
const (
	noAllowedHours = "farm exec: -a/--allowed-hour-ranges is not supported: start farm exec at the hours you allow (cron, a systemd timer)"
	noRepeat       = "farm exec: -r/--repeat is not supported: run farm exec again from cron or a systemd timer (-r is --retries elsewhere in paddock farm, and exec waits for its lock without it)"
)

func newFarmExecCmd(o *farmOptions) *cobra.Command {
	var (
		lockName, name, allowed, repeat string
		concurrency                     uint32
		sets                            []string
	)
	cmd := &cobra.Command{
		Use:   "exec FARM [-l NAME] [-c N] [-s FIELD=VALUE]... [--name HOST] -- CMD [ARG...]",
		Short: "Run CMD on this host holding one of N slots of the farm's lock, with fields of the host set meanwhile",
		Long: `Run CMD on this host while holding one of --concurrency slots of a lock
(zkfarmer's declared exec): a rolling restart of a farm, N hosts at a time.
Once the slot is held, each --set FIELD=VALUE is written to this host's
entry FARM/HOST (enabled=0, so that exporters filtering on enabled=1 drain
it); after CMD, each field gets its previous value back (or is removed if
it had none), then the slot is released: the next host starts only once
this one is restored. exec exits with CMD's status.

The lock is --lock NAME, by default "farm" and FARM's path with "/" turned
into "_" (/services/web: farm_services_web); the first holder fixes
--concurrency. HOST is --name, by default the IPv4 address of the default
route, as farm join names the host; --set wants the host joined. CMD gets
PADDOCK_LOCK_KEY, PADDOCK_LOCK_TOKEN and PADDOCK_ENDPOINTS and is
stopped as paddock lock
stops it: when the slot is lost, SIGTERM then SIGKILL after --grace, and
exec exits 75 (the fields are restored all the same). zkfarmer's -a and -r
are refused.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := commandArgs("FARM")(cmd, args); err != nil {
				return err
			}
			return farmArgs(1, 1)(cmd, args[:1])
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&lockName, "lock", "l", "", "the lock to hold (default: farm and FARM's path, / turned into _)")
	fs.Uint32VarP(&concurrency, "concurrency", "c", 1, "how many hosts may hold the lock at once")
	fs.StringArrayVarP(&sets, "set", "s", nil, "FIELD=VALUE to set on this host's entry while CMD runs, restored afterwards (repeatable)")
	fs.StringVar(&name, "name", "", "the host's name in FARM (default: the IPv4 address of the default route)")
	hf := addHoldFlags(cmd)
	fs.StringVarP(&allowed, "allowed-hour-ranges", "a", "", "zkfarmer's; refused")
	fs.StringVar(&repeat, "repeat", "", "zkfarmer's; refused")
	fs.MarkHidden("allowed-hour-ranges")
	fs.MarkHidden("repeat")
	// -r is farm's --retries: `-r 5m`, zkfarmer's --repeat DELAY, fails
	// to parse as a number; say what it was.
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if strings.Contains(err.Error(), "-r, --retries") {
			return errors.New("paddock: " + noRepeat)
		}
		return err
	})
	cmd.RunE = runE(func(cmd *cobra.Command, args []string) error {
		switch {
		case cmd.Flags().Changed("allowed-hour-ranges"):
			return errors.New(noAllowedHours)
		case cmd.Flags().Changed("repeat"), cmd.Flags().Changed("retries"):
			return errors.New(noRepeat)
		}
		if err := o.textOnly(cmd); err != nil {
			return err
		}
		if err := hf.check(); err != nil {
			return err
		}
		if concurrency == 0 {
			return fmt.Errorf("bad --concurrency %d: want >= 1", concurrency)
		}
		farmPath := znodeArg(args)
		if err := checkZnodePath(farmPath); err != nil {
			return fmt.Errorf("bad path %q: %w", args[0], err)
		}
		settings, err := parseSettings(sets)
		if err != nil {
			return err
		}
		host := name
		if !cmd.Flags().Changed("name") {
			if host, err = farm.DefaultName(); err != nil {
				return err
			}
		}
		if host == "" || strings.Contains(host, "/") || host == farm.CommonName {
			return fmt.Errorf("bad --name %q: want a znode name, not %q and without /", host, farm.CommonName)
		}
		if lockName == "" {
			lockName = farmLockName(farmPath)
		}
		c, err := o.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		hostPath := strings.TrimSuffix(farmPath, "/") + "/" + host
		prefix := "farm exec " + farmPath
		hooks := &heldHooks{
			before: func() error {
				return o.explain(setFields(o, c, hostPath, settings))
			},
			after: func() error {
				return o.explain(restoreFields(o, c, hostPath, settings))
			},
		}
		l := lockRun{o: o.clientOptions, hf: hf, name: lockName, limit: concurrency, value: []byte(host), prefix: prefix}
		return l.run(cmd, c, args[cmd.ArgsLenAtDash():], hooks)
	})
	return cmd
}

// setFields writes the settings to the host's entry, each remembering
// the value it replaces, each within --timeout. A missing entry fails
// with the hint to join. Its context is not the command's: a signal
// that comes now reaches CMD once it has started, and the settings are
// undone after it.
func setFields(o *farmOptions, t farm.Tree, hostPath string, settings []*fieldSetting) error {
	for _, s := range settings {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		_, err := farm.Update(ctx, t, hostPath, func(c farm.Conf) (bool, error) {
			s.remember(c)
			return true, c.SetField(s.field, s.value)
		})
		cancel()
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("%s does not exist: --set needs this host joined to the farm (farm join), or another --name", hostPath)
		}
		if err != nil {
			return fmt.Errorf("set %s on %s: %w", s.field, hostPath, err)
		}
		s.set = true
	}
	return nil
}

// restoreFields puts back what setFields replaced, last set first, each
// within --timeout (from a fresh context: it runs after CMD, whatever
// stopped it).
func restoreFields(o *farmOptions, t farm.Tree, hostPath string, settings []*fieldSetting) error {
	var errs []error
	for i := len(settings) - 1; i >= 0; i-- {
		s := settings[i]
		if !s.set {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		var err error
		if s.had {
			_, err = farm.SetField(ctx, t, hostPath, s.restore, s.prev)
		} else {
			_, err = farm.UnsetField(ctx, t, hostPath, s.restore)
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s on %s: %w", s.field, hostPath, err))
		}
	}
	return errors.Join(errs...)
}
