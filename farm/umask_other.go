//go:build !unix

package farm

import "os"

func umask() os.FileMode { return 0o022 }
