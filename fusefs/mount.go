package fusefs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Mount mounts the tree at dir, read-only, and returns once the kernel has
// it. A stale mount left at dir by a crashed process is cleared first.
func Mount(dir string, src ImageSource, o Options) (*fuse.Server, error) {
	o.defaults()
	if err := ClearStale(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	entry, attr, neg := o.EntryTimeout, o.AttrTimeout, o.EntryTimeout
	opts := &fs.Options{
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{
			FsName:        "mosaic",
			Name:          "mosaic",
			Options:       []string{"ro", "default_permissions"},
			MaxWrite:      1 << 20,
			MaxReadAhead:  1 << 20,
			AllowOther:    os.Geteuid() == 0,
			DisableXAttrs: false, // user.mosaic.signature
		},
	}
	srv, err := fs.Mount(dir, NewRoot(src, o), opts)
	if err != nil {
		return nil, fmt.Errorf("fusefs: mount %s: %w", dir, err)
	}
	return srv, nil
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
