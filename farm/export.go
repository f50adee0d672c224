package farm

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ExportConfig configures Export.
type ExportConfig struct {
	// Tree is the cluster.
	Tree Tree
	// Farm is the farm znode's path.
	Farm string
	// Dest is the local file (or DJB directory) kept in sync.
	Dest string
	// Format writes Dest.
	Format Format
	// Filter keeps only the hosts that pass it.
	Filter Filter
	// OnChanged runs after Dest changed (--changed-cmd).
	OnChanged func()
	// WaitMin and WaitMax (--wait MIN:MAX): after a change, Dest is
	// written once the farm has been quiet for WaitMin, or WaitMax after
	// the first change at the latest. Zero writes at once.
	WaitMin, WaitMax time.Duration
	// Once writes Dest once and returns.
	Once bool
	// Log receives what Export does; nil discards.
	Log *slog.Logger
}

// Export keeps Dest equal to the farm (the hosts passing Filter) until ctx
// ends, or once. See the package documentation.
func Export(ctx context.Context, cfg ExportConfig) error {
	return errors.New("farm: export: not built yet")
}
