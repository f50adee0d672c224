package farm

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// localWatch reports changes of a local configuration: a file (watched
// through its directory, so that an editor's rename over it is seen) or a
// DJB directory (every directory of the tree, new ones added as they
// appear). Its reports are hints: the caller rescans anyway, so a missed
// event only delays a change to the next rescan.
type localWatch struct {
	w    *fsnotify.Watcher
	root string
	dir  bool
	// C receives a value when something may have changed; it holds one,
	// so reports coalesce.
	C    chan struct{}
	done sync.WaitGroup
}

// newLocalWatch watches p, a DJB directory when dir is set.
func newLocalWatch(p string, dir bool) (*localWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	lw := &localWatch{w: w, root: filepath.Clean(p), dir: dir, C: make(chan struct{}, 1)}
	if dir {
		lw.addTree(lw.root)
	} else if err := w.Add(filepath.Dir(lw.root)); err != nil {
		w.Close()
		return nil, err
	}
	lw.done.Add(1)
	go lw.run()
	return lw, nil
}

// addTree watches every directory under p (dot directories excepted, as
// the dir format ignores them). Failures are left to the rescan.
func (lw *localWatch) addTree(p string) {
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if q != p && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		lw.w.Add(q)
		return nil
	})
}

func (lw *localWatch) run() {
	defer lw.done.Done()
	for {
		select {
		case ev, ok := <-lw.w.Events:
			if !ok {
				return
			}
			if !lw.dir && filepath.Clean(ev.Name) != lw.root {
				continue // a neighbour, or a temporary file before its rename
			}
			if lw.dir && ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					lw.addTree(ev.Name)
				}
			}
			select {
			case lw.C <- struct{}{}:
			default:
			}
		case _, ok := <-lw.w.Errors:
			if !ok {
				return
			}
		}
	}
}

// close stops the watch.
func (lw *localWatch) close() {
	lw.w.Close()
	lw.done.Wait()
}
