package harness

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BootImages is the QEMU boot fixture: the same bootable disk as raw and
// qcow2, and the ID its guest prints as "BOOT-OK <id>".
type BootImages struct {
	Raw, Qcow2, BootID string
	// Script is boot.sh.
	Script string
}

// BootFixture builds the boot fixture with make-image.sh, once: the result
// is cached in testing/fixtures/cache (or $MOSAIC_FIXTURE_CACHE), keyed by
// the script's hash, and reused while its images still match the hashes
// the script recorded. Concurrent test processes wait for one build.
func BootFixture(t testing.TB) BootImages {
	t.Helper()
	root := RepoRoot(t)
	dir := filepath.Join(root, "testing", "fixtures", "boot")
	script := filepath.Join(dir, "make-image.sh")
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatalf("boot fixture: %v", err)
	}
	for _, tool := range [][2]string{
		{"syslinux", "syslinux"}, {"mcopy", "mtools"}, {"mkfs.vfat", "dosfstools"}, {"sfdisk", "fdisk"},
		{"mkfs.ext4", "e2fsprogs"}, {"debugfs", "e2fsprogs"}, {"cpio", "cpio"}, {"gzip", "gzip"},
		{"qemu-img", "qemu-utils"}, {"dpkg-deb", "dpkg"}, {"apt-get", "apt"},
		{"qemu-system-x86_64", "qemu-system-x86"},
	} {
		RequireTool(t, tool[0], tool[1])
	}
	sum := sha256.Sum256(src)
	cache := os.Getenv("MOSAIC_FIXTURE_CACHE")
	if cache == "" {
		cache = filepath.Join(root, "testing", "fixtures", "cache")
	}
	out := filepath.Join(cache, "boot-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatalf("boot fixture: %v", err)
	}
	lock, err := os.OpenFile(filepath.Join(out, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("boot fixture: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("boot fixture: lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	imgs := BootImages{Raw: filepath.Join(out, "disk.raw"), Qcow2: filepath.Join(out, "disk.qcow2"),
		Script: filepath.Join(dir, "boot.sh")}
	id, err := checkBootFixture(out)
	if err == nil {
		imgs.BootID = id
		return imgs
	}
	t.Logf("boot fixture: building in %s (%v)", out, err)
	start := time.Now()
	cmd := exec.Command("bash", script, out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("boot fixture: make-image.sh: %v\n%s", err, b)
	}
	id, err = checkBootFixture(out)
	if err != nil {
		t.Fatalf("boot fixture: built, but: %v\n%s", err, b)
	}
	t.Logf("boot fixture: built in %v", time.Since(start).Round(time.Second))
	imgs.BootID = id
	return imgs
}

// checkBootFixture verifies a built fixture against the sha256 sums its
// manifest.txt records and returns the boot ID.
func checkBootFixture(dir string) (string, error) {
	m, err := os.ReadFile(filepath.Join(dir, "manifest.txt"))
	if err != nil {
		return "", err
	}
	id := ""
	sums := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(m)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "boot_id:":
			id = f[1]
		case len(f) == 2 && (f[1] == "disk.raw" || f[1] == "disk.qcow2"):
			sums[f[1]] = f[0]
		}
	}
	if len(id) != 64 || len(sums) != 2 {
		return "", fmt.Errorf("incomplete manifest.txt")
	}
	for name, want := range sums {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != want {
			return "", fmt.Errorf("%s does not match its recorded sha256", name)
		}
	}
	return id, nil
}

// BootResult is what boot.sh measured, in seconds from QEMU's start.
type BootResult struct {
	Marker, Exit, Loader float64
}

// Boot boots image (raw or qcow2) with boot.sh and fails the test unless
// the guest prints the fixture's boot ID. extraEnv may set DRIVE_OPTS,
// FORMAT and the like.
func (b BootImages) Boot(t testing.TB, ctx context.Context, image, format string, extraEnv ...string) BootResult {
	t.Helper()
	RequireTool(t, "qemu-system-x86_64", "qemu-system-x86")
	env := append([]string{"EXPECT_ID=" + b.BootID, "FORMAT=" + format}, extraEnv...)
	cmd := exec.CommandContext(ctx, "bash", b.Script, image, "180")
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("boot %s (%s): %v\n%s", image, format, err, stderr.String())
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		t.Fatalf("boot %s: unexpected boot.sh output %q", image, out)
	}
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return -1
		}
		return v
	}
	return BootResult{Marker: num(f[0]), Exit: num(f[1]), Loader: num(f[2])}
}
