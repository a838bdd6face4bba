package fusefs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/fusefs"
)

func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is missing: FUSE mounts cannot be tested: %v", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil && os.Geteuid() != 0 {
		t.Fatal("fusermount3 is not installed (apt-get install fuse3) and we are not root")
	}
}

func requireTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (apt-get install %s; .ci/run installs it)", name, pkg)
	}
}

// mountTree mounts svc's tree in a temp dir and unmounts it at cleanup.
func mountTree(t testing.TB, svc *engine.Service, o fusefs.Options) string {
	t.Helper()
	dir, _ := mountServer(t, svc, o)
	return dir
}

// mountServer is mountTree that also returns the server (for its Stats).
func mountServer(t testing.TB, svc *engine.Service, o fusefs.Options) (string, *fusefs.Server) {
	t.Helper()
	requireFUSE(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	srv, err := fusefs.Mount(dir, svc, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return dir, srv
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestMountedReadsEqualUpload(t *testing.T) {
	svc := newService(t)
	cases := map[string][]byte{
		"random":     randomBytes(6<<20+12345, 1),
		"sparse":     sparse(24<<20, 2),
		"zero-heavy": zeroHeavy(12<<20+4096, 3),
		"all-zero":   make([]byte, 4<<20),
		"tiny":       []byte("hello"),
		"empty":      {},
	}
	ids := map[string]string{}
	for name, data := range cases {
		ids[name] = upload(t, svc, name, data).ID
	}
	mnt := mountTree(t, svc, fusefs.Options{})
	r := rand.New(rand.NewPCG(7, 7))
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(mnt, "images", ids[name])
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != int64(len(want)) || st.Mode() != 0o444 {
				t.Fatalf("stat: size %d mode %v, want %d 0444", st.Size(), st.Mode(), len(want))
			}
			if got := mustReadFile(t, p); !bytes.Equal(got, want) {
				t.Fatalf("whole-file read differs from the upload")
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for range 80 {
				off := r.Int64N(int64(len(want)) + 1)
				n := r.IntN(1 << 20)
				buf := make([]byte, n)
				got, err := f.ReadAt(buf, off)
				end := min(off+int64(n), int64(len(want)))
				if got != int(end-off) || (err != nil && got == n) {
					t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d bytes", n, off, got, err, end-off)
				}
				if !bytes.Equal(buf[:got], want[off:end]) {
					t.Fatalf("ReadAt(%d, %d) differs from the upload", n, off)
				}
			}
			checkDirectReads(t, p, want, r)
		})
	}
}

// checkDirectReads reads with O_DIRECT (page cache bypassed, every read
// reaches the file system) at aligned random offsets and sizes.
func checkDirectReads(t *testing.T, p string, want []byte, r *rand.Rand) {
	t.Helper()
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("open O_DIRECT: %v", err)
	}
	defer syscall.Close(fd)
	buf := alignedBuf(1 << 20)
	for range 60 {
		off := r.Int64N(int64(len(want))/4096+1) * 4096
		n := (1 + r.IntN(256)) * 4096
		got, err := syscall.Pread(fd, buf[:n], off)
		if err != nil {
			t.Fatalf("O_DIRECT pread(%d, %d): %v", n, off, err)
		}
		end := min(off+int64(n), int64(len(want)))
		if got != int(end-off) || !bytes.Equal(buf[:got], want[off:end]) {
			t.Fatalf("O_DIRECT pread(%d, %d) = %d bytes, differs from the upload", n, off, got)
		}
	}
}

func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	a := int(uintptr(unsafe.Pointer(&b[0])) & 4095)
	if a != 0 {
		a = 4096 - a
	}
	return b[a : a+n]
}

func TestSeekDataAndHoleFollowZeroChunks(t *testing.T) {
	svc := newService(t)
	data := sparse(40<<20, 11)
	img := upload(t, svc, "sparse", data)
	mnt := mountTree(t, svc, fusefs.Options{})
	rd, _, err := svc.Open(context.Background(), img.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The data extents the manifest implies.
	var want [][2]int64
	for _, c := range rd.Manifest().Chunks {
		if c.ID.IsZero() {
			continue
		}
		if n := len(want); n > 0 && want[n-1][1] == c.Offset {
			want[n-1][1] += int64(c.Size)
		} else {
			want = append(want, [2]int64{c.Offset, c.Offset + int64(c.Size)})
		}
	}
	if len(want) < 3 {
		t.Fatalf("fixture has %d data extents; want a sparse image", len(want))
	}
	fd, err := syscall.Open(filepath.Join(mnt, "images", img.ID), syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	var got [][2]int64
	for off := int64(0); ; {
		d, err := syscall.Seek(fd, off, 3 /* SEEK_DATA */)
		if errors.Is(err, syscall.ENXIO) {
			break
		}
		if err != nil {
			t.Fatalf("SEEK_DATA %d: %v", off, err)
		}
		h, err := syscall.Seek(fd, d, 4 /* SEEK_HOLE */)
		if err != nil {
			t.Fatalf("SEEK_HOLE %d: %v", d, err)
		}
		got = append(got, [2]int64{d, h})
		if h >= int64(len(data)) {
			break
		}
		off = h
	}
	if !slices.Equal(got, want) {
		t.Fatalf("SEEK_DATA/SEEK_HOLE walk found %d extents %v...; manifest has %d %v...", len(got), got[:min(3, len(got))], len(want), want[:min(3, len(want))])
	}
	for i, e := range want {
		next := int64(len(data))
		if i+1 < len(want) {
			next = want[i+1][0]
		}
		if !engine.IsAllZero(data[e[1]:next]) {
			t.Fatalf("hole [%d, %d) holds non-zero bytes", e[1], next)
		}
	}
	if _, err := syscall.Seek(fd, int64(len(data)), 3); !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("SEEK_DATA at EOF: %v, want ENXIO", err)
	}
	// st_blocks counts stored bytes only once the manifest is known.
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	var dataBytes int64
	for _, e := range want {
		dataBytes += e[1] - e[0]
	}
	eventually(t, 2*time.Second, "st_blocks reflects the zero runs", func() bool {
		_ = syscall.Stat(filepath.Join(mnt, "images", img.ID), &st)
		return st.Blocks == (dataBytes+511)/512
	})
}

func TestXattrsDescribeTheImage(t *testing.T) {
	svc := newService(t)
	img := upload(t, svc, "with-xattrs", randomBytes(100<<10, 5))
	mnt := mountTree(t, svc, fusefs.Options{})
	p := filepath.Join(mnt, "images", img.ID)
	get := func(name string) (string, error) {
		buf := make([]byte, 256)
		n, err := syscall.Getxattr(p, name, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	want := map[string]string{
		"user.mosaic.id":               img.ID,
		"user.mosaic.name":             "with-xattrs",
		"user.mosaic.status":           "active",
		"user.mosaic.disk_format":      "raw",
		"user.mosaic.container_format": "bare",
		"user.mosaic.checksum":         img.Checksum,
		"user.mosaic.os_hash_algo":     "sha512",
		"user.mosaic.os_hash_value":    img.OSHashValue,
		"user.mosaic.signature":        "unsigned",
	}
	for k, v := range want {
		got, err := get(k)
		if err != nil || got != v {
			t.Errorf("getxattr %s = %q, %v; want %q", k, got, err, v)
		}
	}
	if len(img.OSHashValue) != 128 {
		t.Fatalf("fixture os_hash_value %q", img.OSHashValue)
	}
	buf := make([]byte, 4096)
	n, err := syscall.Listxattr(p, buf)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	var wantNames []string
	for k := range want {
		wantNames = append(wantNames, k)
	}
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Fatalf("listxattr = %q, want %q", names, wantNames)
	}
	if _, err := get("user.mosaic.nope"); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("unknown xattr: %v, want ENODATA", err)
	}
	if _, err := syscall.Getxattr(p, "user.mosaic.os_hash_value", make([]byte, 4)); !errors.Is(err, syscall.ERANGE) {
		t.Fatalf("small buffer: %v, want ERANGE", err)
	}
	if err := syscall.Setxattr(p, "user.mosaic.checksum", []byte("x"), 0); err == nil {
		t.Fatal("setxattr on the read-only mount succeeded")
	}
}

func TestByNameLinksUniqueNames(t *testing.T) {
	svc := newService(t)
	alpha := upload(t, svc, "alpha", []byte("alpha content"))
	upload(t, svc, "dup", []byte("one"))
	upload(t, svc, "dup", []byte("two"))
	upload(t, svc, "a/b", []byte("slash"))
	mnt := mountTree(t, svc, fusefs.Options{EntryTimeout: time.Hour, NegativeTimeout: time.Hour})
	byName := filepath.Join(mnt, "by-name")
	names := func() []string {
		ents, err := os.ReadDir(byName)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if got := names(); !slices.Equal(got, []string{"alpha"}) {
		t.Fatalf("by-name holds %q, want only the unique usable name alpha", got)
	}
	if target, err := os.Readlink(filepath.Join(byName, "alpha")); err != nil || target != "../images/"+alpha.ID {
		t.Fatalf("readlink alpha = %q, %v", target, err)
	}
	if got := mustReadFile(t, filepath.Join(byName, "alpha")); string(got) != "alpha content" {
		t.Fatalf("read through the link: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(byName, "dup")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a shared name has a link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(byName, "beta")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("beta before the rename: %v", err)
	}
	// A rename moves the link within a second, despite hour-long timeouts.
	if _, err := svc.Update(context.Background(), alpha.ID, func(i *engine.Image) error {
		n := "beta"
		i.Name = &n
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Second, "rename shows in by-name", func() bool {
		_, errA := os.Lstat(filepath.Join(byName, "alpha"))
		_, errB := os.Lstat(filepath.Join(byName, "beta"))
		return errors.Is(errA, os.ErrNotExist) && errB == nil
	})
	t.Logf("rename visible after %v", took)
}

func TestLifecycleVisibleWithinASecond(t *testing.T) {
	svc := newService(t)
	ctx := context.Background()
	old := upload(t, svc, "old", randomBytes(1<<20, 9))
	// Hour-long timeouts: only the watcher's invalidation can make changes
	// visible quickly.
	mnt := mountTree(t, svc, fusefs.Options{EntryTimeout: time.Hour, NegativeTimeout: time.Hour})
	images := filepath.Join(mnt, "images")

	// A queued image is not shown; the kernel caches that negative answer.
	name := "new"
	img, err := svc.Create(ctx, &engine.Image{Name: &name, DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(images, img.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("queued image shown: %v", err)
	}
	data := randomBytes(3<<20, 10)
	if _, err := svc.Upload(ctx, img.ID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Second, "new active image visible", func() bool {
		_, err := os.Stat(filepath.Join(images, img.ID))
		return err == nil
	})
	t.Logf("new image visible after %v", took)
	if got := mustReadFile(t, filepath.Join(images, img.ID)); !bytes.Equal(got, data) {
		t.Fatal("new image content differs")
	}

	// Deactivated: listed, but open fails with EACCES; reactivated: opens.
	setStatus := func(id string, s engine.Status) {
		if _, err := svc.Update(ctx, id, func(i *engine.Image) error { i.Status = s; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(img.ID, engine.StatusDeactivated)
	if _, err := os.ReadFile(filepath.Join(images, img.ID)); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("open of a deactivated image: %v, want EACCES", err)
	}
	setStatus(img.ID, engine.StatusActive)
	if _, err := os.ReadFile(filepath.Join(images, img.ID)); err != nil {
		t.Fatalf("open after reactivation: %v", err)
	}

	// Deleted: gone within a second; an open file keeps reading (until GC).
	f, err := os.Open(filepath.Join(images, old.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := svc.Delete(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, time.Second, "deleted image gone", func() bool {
		_, err := os.Stat(filepath.Join(images, old.ID))
		return errors.Is(err, os.ErrNotExist)
	})
	t.Logf("deleted image gone after %v", took)
	ents, err := os.ReadDir(images)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != img.ID {
		t.Fatalf("images/ lists %v, want only %s", ents, img.ID)
	}
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 512<<10); err != nil {
		t.Fatalf("read from a file opened before the delete: %v", err)
	}
}

// refuseNamed is a SignatureChecker that refuses images named "refused"
// and records what it was asked.
type refuseNamed struct {
	mu     sync.Mutex
	opened []string
}

func (c *refuseNamed) CheckOpen(ctx context.Context, img *engine.Image) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened = append(c.opened, img.ID)
	if img.Name != nil && *img.Name == "refused" {
		return engine.Errorf(engine.ErrForbidden, "refused")
	}
	return nil
}

func (c *refuseNamed) Status(img *engine.Image) string { return "checked by the test" }

func TestMountTunables(t *testing.T) {
	svc := newService(t)
	img := upload(t, svc, "x", randomBytes(2<<20, 3))
	checker := &refuseNamed{}
	mnt := mountTree(t, svc, fusefs.Options{Signatures: checker})
	bdi, err := fusefs.BDIPath(mnt)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := os.ReadFile(filepath.Join(bdi, "read_ahead_kb"))
	if err != nil {
		t.Fatalf("read_ahead_kb of the mount: %v", err)
	}
	if strings.TrimSpace(string(ra)) != "1024" {
		t.Fatalf("read_ahead_kb = %s, want 1024", ra)
	}
	p := filepath.Join(mnt, "images", img.ID)
	if _, err := os.OpenFile(p, os.O_RDWR, 0); err == nil {
		t.Fatal("opened an image read-write")
	}
	// QEMU takes OFD locks on images; the kernel must handle them locally.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_RDLCK, Whence: 0, Start: 100, Len: 1}
	const fOFDSetLK = 37
	if err := syscall.FcntlFlock(f.Fd(), fOFDSetLK, &lk); err != nil {
		t.Fatalf("F_OFD_SETLK read lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatalf("flock: %v", err)
	}
	checker.mu.Lock()
	got := slices.Clone(checker.opened)
	checker.mu.Unlock()
	if !slices.Contains(got, img.ID) {
		t.Fatalf("the signature check saw %v, want %s", got, img.ID)
	}
	refused := upload(t, svc, "refused", []byte("no"))
	if _, err := os.ReadFile(filepath.Join(mnt, "images", refused.ID)); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("open refused by the signature check: %v, want EACCES", err)
	}
	buf := make([]byte, 64)
	if n, err := syscall.Getxattr(p, "user.mosaic.signature", buf); err != nil || string(buf[:n]) != "checked by the test" {
		t.Fatalf("user.mosaic.signature with a checker: %q, %v", buf[:n], err)
	}
	if n, err := syscall.Getxattr(p, "user.mosaic.signature", nil); err != nil || n != len("checked by the test") {
		t.Fatalf("xattr size query: %d, %v", n, err)
	}
}

// The chunk cache is far smaller than one read: its buffers are lent to
// replies and recycled all the time, and no reply may carry a byte of a
// recycled buffer.
func TestConcurrentReadsOnOneHandle(t *testing.T) {
	svc := newServiceWithCache(t, 2<<20)
	data := randomBytes(24<<20, 21)
	img := upload(t, svc, "shared", data)
	mnt := mountTree(t, svc, fusefs.Options{})
	f, err := os.Open(filepath.Join(mnt, "images", img.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 0))
			buf := make([]byte, 1<<20)
			for range 40 {
				off := r.Int64N(int64(len(data)))
				n := 1 + r.IntN(len(buf))
				got, err := f.ReadAt(buf[:n], off)
				end := min(off+int64(n), int64(len(data)))
				if got != int(end-off) || !bytes.Equal(buf[:got], data[off:end]) {
					errs <- errors.New("concurrent ReadAt(" + strconv.Itoa(n) + ", " + strconv.FormatInt(off, 10) + ") differs: " + errString(err))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := svc.ChunkCache().Stats(); st.Recycled == 0 {
		t.Errorf("no chunk buffer was recycled (%+v): the test proves nothing", st)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func TestToolsOnMountedImages(t *testing.T) {
	requireTool(t, "qemu-img", "qemu-utils")
	requireTool(t, "cp", "coreutils")
	svc := newService(t)
	work := t.TempDir()
	raw := sparse(24<<20, 31)
	rawPath := filepath.Join(work, "src.raw")
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	qcowPath := filepath.Join(work, "src.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", rawPath, qcowPath)
	rawImg := upload(t, svc, "raw", raw)
	qcowImg := upload(t, svc, "qcow2", mustReadFile(t, qcowPath))
	mnt := mountTree(t, svc, fusefs.Options{})
	mRaw := filepath.Join(mnt, "images", rawImg.ID)
	mQcow := filepath.Join(mnt, "images", qcowImg.ID)

	// cp --sparse=always: same bytes, holes where the zero runs are.
	cp := filepath.Join(work, "cp.raw")
	run(t, "cp", "--sparse=always", mRaw, cp)
	if !bytes.Equal(mustReadFile(t, cp), raw) {
		t.Fatal("cp --sparse=always copy differs")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(cp, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= int64(len(raw))*3/4 {
		t.Fatalf("cp --sparse=always copy allocates %d of %d bytes: not sparse", st.Blocks*512, len(raw))
	}

	info := func(p, format string) map[string]any {
		out := run(t, "qemu-img", "info", "--output=json", "-f", format, p)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("qemu-img info: %v\n%s", err, out)
		}
		return m
	}
	if m := info(mRaw, "raw"); m["format"] != "raw" || m["virtual-size"] != float64(len(raw)) {
		t.Fatalf("qemu-img info raw: %v", m)
	}
	if m := info(mQcow, "qcow2"); m["format"] != "qcow2" || m["virtual-size"] != float64(len(raw)) {
		t.Fatalf("qemu-img info qcow2: %v", m)
	}
	out := filepath.Join(work, "converted.raw")
	run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", mQcow, out)
	if !bytes.Equal(mustReadFile(t, out), raw) {
		t.Fatal("qemu-img convert of the mounted qcow2 differs from the raw source")
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", mRaw, mQcow)
	// QEMU's own read path, with its locking, on the read-only mount.
	run(t, "qemu-img", "convert", "-O", "qcow2", "--image-opts",
		"driver=raw,file.driver=file,file.filename="+mRaw+",file.locking=on", filepath.Join(work, "back.qcow2"))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// passthroughExpected reports whether this kernel and user should get FUSE
// passthrough (Linux 6.9+, CAP_SYS_ADMIN).
func passthroughExpected(t *testing.T) bool {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var rel []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	var major, minor int
	parts := strings.SplitN(string(rel), ".", 3)
	if len(parts) >= 2 {
		major, _ = strconv.Atoi(parts[0])
		minor, _ = strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	}
	ok := os.Geteuid() == 0 && (major > 6 || major == 6 && minor >= 9)
	t.Logf("kernel %s, euid %d: passthrough expected %v", rel, os.Geteuid(), ok)
	return ok
}

func TestPassthroughServesCachedCopies(t *testing.T) {
	svc := newService(t)
	ctx := context.Background()
	data := sparse(16<<20, 41)
	cached := upload(t, svc, "cached", data)
	plain := upload(t, svc, "plain", randomBytes(3<<20, 42))
	cache, err := engine.OpenImageCache(engine.ImageCacheConfig{Dir: t.TempDir()}, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	if err := cache.Queue(ctx, cached.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "image cached", func() bool {
		st, _ := cache.State(ctx)
		return len(st.Cached) == 1 && len(st.Queued) == 0
	})
	dir, srv := mountServer(t, svc, fusefs.Options{LocalCopies: cache})
	p := filepath.Join(dir, "images", cached.ID)
	if got := mustReadFile(t, p); !bytes.Equal(got, data) {
		t.Fatal("read through the cached copy differs")
	}
	checkDirectReads(t, p, data, rand.New(rand.NewPCG(3, 3)))
	st := srv.Stats()
	if st.CopyOpens < 2 {
		t.Fatalf("stats %+v: the local copy was not used", st)
	}
	if passthroughExpected(t) && st.Reads != 0 {
		t.Fatalf("stats %+v: reads reached the file system; passthrough did not engage", st)
	}
	t.Logf("after reading the cached image: %+v", st)
	// An image without a copy is served by the engine as before.
	if got := mustReadFile(t, filepath.Join(dir, "images", plain.ID)); len(got) != 3<<20 {
		t.Fatalf("uncached image: %d bytes", len(got))
	}
	if st2 := srv.Stats(); st2.Reads == st.Reads || st2.CopyOpens != st.CopyOpens {
		t.Fatalf("stats %+v after reading an uncached image", st2)
	}
}

func TestLocalCopiesWithoutPassthrough(t *testing.T) {
	svc := newService(t)
	ctx := context.Background()
	data := sparse(8<<20, 43)
	img := upload(t, svc, "cached", data)
	cache, err := engine.OpenImageCache(engine.ImageCacheConfig{Dir: t.TempDir()}, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	if err := cache.Queue(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "image cached", func() bool {
		st, _ := cache.State(ctx)
		return len(st.Cached) == 1 && len(st.Queued) == 0
	})
	dir, srv := mountServer(t, svc, fusefs.Options{LocalCopies: cache, NoPassthrough: true})
	p := filepath.Join(dir, "images", img.ID)
	if got := mustReadFile(t, p); !bytes.Equal(got, data) {
		t.Fatal("read of the local copy through the process differs")
	}
	checkDirectReads(t, p, data, rand.New(rand.NewPCG(4, 4)))
	if st := srv.Stats(); st.CopyOpens < 2 || st.Reads == 0 || st.ReadBytes < int64(len(data)) {
		t.Fatalf("stats %+v: the copy was not read through the process", st)
	}
}

// TestImagesInUseGetCached: an image held open on the mount (a VM running
// from it) is cached without an operator's PUT, and its next open reads
// the copy; an open closed at once (a probe) caches nothing, and an image
// larger than the cache is left alone.
func TestImagesInUseGetCached(t *testing.T) {
	svc := newService(t)
	ctx := context.Background()
	data := sparse(8<<20, 51)
	used := upload(t, svc, "used", data)
	probed := upload(t, svc, "probed", randomBytes(2<<20, 52))
	huge := upload(t, svc, "huge", randomBytes(12<<20, 53))
	cache, err := engine.OpenImageCache(engine.ImageCacheConfig{
		Dir: t.TempDir(), MaxBytes: 10 << 20, CacheInUseAfter: 300 * time.Millisecond,
	}, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	dir, srv := mountServer(t, svc, fusefs.Options{LocalCopies: cache})
	// A probe: open and close at once.
	if got := mustReadFile(t, filepath.Join(dir, "images", probed.ID)); len(got) != 2<<20 {
		t.Fatalf("probed image: %d bytes", len(got))
	}
	// In use: held open past CacheInUseAfter; the huge one too.
	hold := func(id string) *os.File {
		f, err := os.Open(filepath.Join(dir, "images", id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() }) // before the unmount, even after a Fatal
		if _, err := f.ReadAt(make([]byte, 64<<10), 0); err != nil {
			t.Fatal(err)
		}
		return f
	}
	hf := hold(huge.ID)
	// A negative check, so a wait: three times the delay, for the huge
	// image and for the probe closed before it.
	time.Sleep(3 * 300 * time.Millisecond)
	hf.Close()
	if st, _ := cache.State(ctx); len(st.Cached) != 0 || len(st.Queued) != 0 {
		t.Fatalf("a probe or an image larger than the cache was cached: %+v", st)
	}
	f := hold(used.ID)
	eventually(t, 20*time.Second, "the image in use cached", func() bool {
		st, _ := cache.State(ctx)
		return len(st.Cached) == 1 && st.Cached[0].ImageID == used.ID && len(st.Queued) == 0
	})
	f.Close()
	if st, _ := cache.State(ctx); len(st.Cached) != 1 || len(st.Queued) != 0 {
		t.Fatalf("cache after the image in use was cached: %+v", st)
	}
	before := srv.Stats()
	if got := mustReadFile(t, filepath.Join(dir, "images", used.ID)); !bytes.Equal(got, data) {
		t.Fatal("read of the image after it was cached differs")
	}
	if st := srv.Stats(); st.CopyOpens != before.CopyOpens+1 {
		t.Fatalf("stats %+v: the next open did not use the copy", st)
	}
}
