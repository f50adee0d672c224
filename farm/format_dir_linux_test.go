package farm

import (
	"bytes"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDirDeletesLast watches the export root with inotify: the host that
// left is removed only after the host that joined is in place, so a
// reader never sees fewer hosts than either version of the farm has.
func TestDirDeletesLast(t *testing.T) {
	root := t.TempDir()
	before := Conf{"a": Conf{"x": "1"}, "h": Conf{"keep": "1", "old": "1"}, "m": "1", "z": Conf{"x": "1"}}
	if _, err := (dirFormat{}).Write(root, before); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("no inotify: %v", err)
	}
	defer unix.Close(fd)
	dirs := map[int32]string{}
	for _, d := range []string{"", "h"} {
		wd, err := unix.InotifyAddWatch(fd, filepath.Join(root, d), unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_CREATE)
		if err != nil {
			t.Fatal(err)
		}
		dirs[int32(wd)] = d
	}
	// a, m and h/old leave; b, n and h/new join, b and n sorting after
	// a and m, h/new before z: a writer deleting as it goes would show
	// a deletion before an addition.
	after := Conf{"b": Conf{"x": "1"}, "h": Conf{"keep": "1", "new": "1"}, "n": "1", "z": Conf{"x": "1"}}
	if _, err := (dirFormat{}).Write(root, after); err != nil {
		t.Fatal(err)
	}
	var events []string
	buf := make([]byte, 64*1024)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if strings.HasPrefix(name, ".") {
				continue // temporary files and directories
			}
			name = filepath.Join(dirs[ev.Wd], name)
			switch {
			case ev.Mask&unix.IN_DELETE != 0:
				events = append(events, "delete "+name)
			case ev.Mask&(unix.IN_MOVED_TO|unix.IN_CREATE) != 0:
				events = append(events, "add "+name)
			}
		}
	}
	// Every addition, then every deletion (in whatever order in each).
	want := []string{"add b", "add h/new", "add n", "delete a", "delete h/old", "delete m"}
	got := append([]string(nil), events...)
	lastAdd, firstDelete := -1, len(got)
	for i, e := range got {
		if strings.HasPrefix(e, "add ") {
			lastAdd = i
		} else if i < firstDelete {
			firstDelete = i
		}
	}
	sort.Strings(got)
	if strings.Join(got, ", ") != strings.Join(want, ", ") || lastAdd > firstDelete {
		t.Errorf("events in %s = %v, want %v with every add before any delete", root, events, want)
	}
}

// TestDirFIFO: a FIFO is no value; reading or writing the directory never
// opens it (that would block), and a key naming it replaces it.
func TestDirFIFO(t *testing.T) {
	root := t.TempDir()
	fifo := filepath.Join(root, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	writeTree(t, root, map[string]string{"a": "1"})
	got, err := dirFormat{}.Read(root)
	if err != nil || !got.Equal(Conf{"a": "1"}) {
		t.Errorf("Read = %v, %v, want {a: 1}", got, err)
	}
	if changed, err := (dirFormat{}).Write(root, Conf{"a": "1"}); err != nil || changed {
		t.Errorf("Write(same) = %v, %v, want false, nil", changed, err)
	}
	if changed, err := (dirFormat{}).Write(root, Conf{"a": "1", "fifo": "2"}); err != nil || !changed {
		t.Errorf("Write(fifo: 2) = %v, %v, want true, nil", changed, err)
	}
	assertFile(t, fifo, "2\n")
}
