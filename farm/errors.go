package farm

import "errors"

// Sentinel errors of the package, matched with errors.Is; rpc maps them to
// gRPC codes (all InvalidArgument but ErrConflict).
var (
	// ErrBadField is a field path that is empty or has an empty segment.
	ErrBadField = errors.New("farm: bad field")
	// ErrBadFilter is a filter predicate that cannot be parsed.
	ErrBadFilter = errors.New("farm: bad filter")
	// ErrBadFormat is an unknown format name, or a path whose format
	// cannot be inferred.
	ErrBadFormat = errors.New("farm: bad format")
	// ErrBadConf is a configuration that is not a JSON object (a znode's
	// data written by something else, a broken local file).
	ErrBadConf = errors.New("farm: bad configuration")
	// ErrBadThreshold is a check threshold that is neither a number nor a
	// percentage.
	ErrBadThreshold = errors.New("farm: bad threshold")
	// ErrConflict is a compare-and-set that kept losing to other writers.
	ErrConflict = errors.New("farm: too many concurrent changes")
)
