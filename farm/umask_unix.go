//go:build unix

package farm

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// umask reads the process's umask once (reading it means setting it, so
// it is done before any file is written and restored at once).
var umask = sync.OnceValue(func() os.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return os.FileMode(m)
})
