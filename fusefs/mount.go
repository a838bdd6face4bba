package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxRequest is the largest READ the kernel sends (MaxWrite also sets
// max_pages): 1 MiB, the most Linux allows by default.
const maxRequest = 1 << 20

// Server is a mounted tree. Unmount (or an external fusermount -u) stops
// it and its watcher.
type Server struct {
	*fuse.Server
	root   *Root
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Mount mounts the tree at dir, read-only, and returns once the kernel has
// it. A stale mount left at dir by a crashed process is cleared first.
func Mount(dir string, src ImageSource, o Options) (*Server, error) {
	root, err := NewRoot(src, o)
	if err != nil {
		return nil, err
	}
	o = root.o
	if err := ClearStale(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	// The watcher's baseline: what the kernel could cache from now on.
	ctx, cancel := context.WithCancel(context.Background())
	base, err := root.snapshot(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	entry, attr, neg := o.EntryTimeout, o.AttrTimeout, o.NegativeTimeout
	opts := &fs.Options{
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{
			FsName:  "mosaic",
			Name:    "mosaic",
			Options: []string{"ro", "default_permissions"},
			// 1 MiB requests; the read-ahead window is raised to match
			// below, through sysfs (INIT can only lower it).
			MaxWrite:     maxRequest,
			MaxReadAhead: max(maxRequest, o.ReadAheadKB<<10),
			AllowOther:   os.Geteuid() == 0,
			// Content never changes under an inode: no automatic page
			// cache invalidation on attribute refreshes.
			ExplicitDataCacheControl: true,
			EnableSymlinkCaching:     true,
			DirectMount:              os.Geteuid() == 0,
			// Splicing only helps fd-backed results, and go-fuse logs
			// every 1 MiB read it cannot splice.
			DisableSplice: true,
			Logger:        slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
			// EnableLocks stays off: the kernel then handles flock and
			// OFD locks locally, which is what QEMU needs.
		},
	}
	srv, err := fs.Mount(dir, root, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	if o.ReadAheadKB > 0 {
		if err := setReadAhead(dir, o.ReadAheadKB); err != nil {
			o.Logger.Warn("fuse: cannot raise read-ahead; sequential reads will be slower", "dir", dir, "err", err)
		}
	}
	s := &Server{Server: srv, root: root, dir: dir, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		root.watch(ctx, base)
	}()
	go func() {
		srv.Wait() // unmounted from outside: stop watching
		cancel()
	}()
	return s, nil
}

// Unmount stops the watcher and unmounts the tree. It fails (and leaves
// the tree mounted) while files are open.
func (s *Server) Unmount() error {
	if err := s.Server.Unmount(); err != nil {
		return fmt.Errorf("fusefs: unmount %s: %w", s.dir, err)
	}
	s.once.Do(func() { s.cancel(); <-s.done })
	return nil
}

// OpenImages returns the tree's open-file counts (Options.OpenImages).
func (s *Server) OpenImages() *OpenImages { return s.root.o.OpenImages }

// Stats returns the tree's counters.
func (s *Server) Stats() Stats { return s.root.Stats() }

// BDIPath returns the sysfs directory of the backing device info of the
// file system mounted at dir (FUSE names it "<major>:<minor>").
func BDIPath(dir string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return "", fmt.Errorf("fusefs: stat %s: %w", dir, err)
	}
	dev := st.Dev
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	return fmt.Sprintf("/sys/class/bdi/%d:%d", major, minor), nil
}

// setReadAhead sets the read-ahead of the file system mounted at dir. Files
// opened afterwards use it.
func setReadAhead(dir string, kb int) error {
	bdi, err := BDIPath(dir)
	if err != nil {
		return err
	}
	p := filepath.Join(bdi, "read_ahead_kb")
	if err := os.WriteFile(p, []byte(strconv.Itoa(kb)), 0); err != nil {
		return fmt.Errorf("fusefs: set %s: %w", p, err)
	}
	return nil
}

// ClearStale unmounts dir if a dead FUSE server left it mounted (reads
// fail with ENOTCONN).
func ClearStale(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mounted, err := isMountPoint(abs)
	if err != nil || !mounted {
		return err
	}
	// statfs always reaches the FUSE server (stat may be answered from the
	// kernel's attribute cache), so ENOTCONN reliably means a dead server.
	var st syscall.Statfs_t
	if err := syscall.Statfs(abs, &st); !errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("fusefs: %s is already mounted by a live file system", abs)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", abs).CombinedOutput()
	if err != nil {
		if err2 := syscall.Unmount(abs, syscall.MNT_DETACH); err2 != nil {
			return fmt.Errorf("fusefs: clear stale mount %s: %v: %s (and umount: %v)", abs, err, strings.TrimSpace(string(out)), err2)
		}
	}
	return nil
}

func isMountPoint(abs string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("fusefs: read mountinfo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == abs {
			return true, nil
		}
	}
	return false, nil
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
