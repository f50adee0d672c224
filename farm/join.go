package farm

import (
	"context"
	"errors"
	"log/slog"
)

// JoinConfig configures Join.
type JoinConfig struct {
	// Tree is the cluster.
	Tree Tree
	// NewSession opens the session that owns the host's ephemeral znode;
	// Join opens another when one ends (expired after a long partition).
	// Unused with Common.
	NewSession func(ctx context.Context) (Session, error)
	// Farm is the farm znode's path (/services/db).
	Farm string
	// Name is the host's znode name (its IPv4 address by default, see
	// DefaultName); ignored with Common, which uses CommonName.
	Name string
	// Conf is the local configuration: a file or a DJB directory.
	Conf string
	// Format reads and writes Conf.
	Format Format
	// Common keeps the persistent FARM/common instead of an ephemeral
	// host znode, and leaves size alone.
	Common bool
	// OneWay (import) only copies local changes to the farm: remote
	// changes are not written to Conf.
	OneWay bool
	// Hostname, when not empty, is set as the hostname field of a Conf
	// that has none (a value the user put there is never rewritten).
	Hostname string
	// OnChanged runs after a remote change was written to Conf
	// (--changed-cmd).
	OnChanged func()
	// Log receives what Join does; nil discards.
	Log *slog.Logger
}

// Join registers the host in the farm and keeps its znode and its local
// configuration in sync, both ways, until ctx ends. See the package
// documentation.
func Join(ctx context.Context, cfg JoinConfig) error {
	return errors.New("farm: join: not built yet")
}
