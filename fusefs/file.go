package fusefs

import (
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/mosaicimg/mosaic/engine"
)

// imageFile is one image's content: one inode per (image ID, manifest).
type imageFile struct {
	fs.Inode
	src   ImageSource
	o     Options
	st    *stats
	id    string
	root  engine.ChunkID
	size  int64
	mtime time.Time

	// layout is the manifest's data/zero extents, known from the first
	// open on (SEEK_DATA/SEEK_HOLE and st_blocks use it).
	layout atomic.Pointer[layout]
}

var (
	_ = (fs.NodeGetattrer)((*imageFile)(nil))
	_ = (fs.NodeOpener)((*imageFile)(nil))
	_ = (fs.NodeReader)((*imageFile)(nil))
	_ = (fs.NodeReleaser)((*imageFile)(nil))
	_ = (fs.NodeLseeker)((*imageFile)(nil))
	_ = (fs.NodeGetxattrer)((*imageFile)(nil))
	_ = (fs.NodeListxattrer)((*imageFile)(nil))
)

func newImageFile(src ImageSource, o Options, st *stats, img *engine.Image) *imageFile {
	return &imageFile{src: src, o: o, st: st, id: img.ID, root: img.ManifestRoot, size: *img.Size, mtime: img.CreatedAt}
}

func (f *imageFile) fillAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Size = uint64(f.size)
	// Until the manifest is known the file claims to be fully allocated;
	// afterwards st_blocks counts only the bytes of stored (non-zero)
	// chunks, as du and cp's sparse heuristics expect.
	data := f.size
	if l := f.layout.Load(); l != nil {
		data = l.dataBytes
	}
	a.Blocks = uint64(data+511) / 512
	a.Blksize = 1 << 20
	t := uint64(f.mtime.Unix())
	a.Mtime, a.Ctime, a.Atime = t, t, t
	a.Nlink = 1
}

func (f *imageFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fillAttr(&out.Attr)
	out.SetTimeout(f.o.AttrTimeout)
	return 0
}

// handle is an open file: it owns an engine reader, so each opener gets
// its own sequential-access detection and read-ahead, and, when the image
// has a complete local copy, that copy for FUSE passthrough.
type handle struct {
	r    *engine.ImageReader
	copy *os.File
	// passthrough is whether to offer copy to the kernel.
	passthrough bool
	// closed, if set, tells the local copies that this open ended.
	closed func()
}

var _ = (fs.FilePassthroughFder)((*handle)(nil))

// PassthroughFd offers the local copy to go-fuse, which registers it with
// the kernel as the backing file. Without one (or if the kernel refuses),
// reads come to Read.
func (h *handle) PassthroughFd() (int, bool) {
	if h.copy == nil || !h.passthrough {
		return 0, false
	}
	return int(h.copy.Fd()), true
}

func (f *imageFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	// An open is not abandoned when the kernel relays a signal
	// (FUSE_INTERRUPT): QEMU does not retry an open that fails with EINTR,
	// and it may take a signal while the first open of an image waits for
	// its in-use lease. (A fatal signal still ends the caller's wait.)
	ctx = context.WithoutCancel(ctx)
	// Count the content open before checking the record (see OpenImages).
	f.o.OpenImages.acquire(ctx, f.root)
	fh, fuseFlags, errno := f.open(ctx)
	if errno != 0 {
		f.o.OpenImages.release(f.root)
	}
	return fh, fuseFlags, errno
}

func (f *imageFile) open(ctx context.Context) (fs.FileHandle, uint32, syscall.Errno) {
	img, err := f.src.Get(engine.LocalRead(ctx), f.id)
	if err != nil {
		return nil, 0, errnoFor(f.o.Logger, "open", f.id, err)
	}
	if img.ManifestRoot != f.root || !shown(img) {
		return nil, 0, syscall.ENOENT
	}
	if img.Status == engine.StatusDeactivated {
		return nil, 0, syscall.EACCES
	}
	if err := f.checkSignature(ctx, img); err != nil {
		return nil, 0, errnoFor(f.o.Logger, "open", f.id, err)
	}
	r, err := f.src.OpenRecord(ctx, img)
	if err != nil {
		return nil, 0, errnoFor(f.o.Logger, "open", f.id, err)
	}
	if f.layout.Load() == nil {
		if f.layout.CompareAndSwap(nil, newLayout(r.Manifest())) {
			// st_blocks just became exact: let the kernel refetch the
			// attributes. Not from inside this request (go-fuse
			// notifications must not run in a handler).
			go f.NotifyContent(-1, 0)
		}
	}
	h := &handle{r: r, passthrough: !f.o.NoPassthrough}
	if f.o.LocalCopies != nil {
		if c, ok := f.o.LocalCopies.OpenCopy(ctx, img); ok {
			h.copy = c
			f.st.copyOpens.Add(1)
		} else {
			h.closed = f.o.LocalCopies.InUse(img)
		}
	}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *imageFile) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		if h.copy != nil {
			h.copy.Close() // the kernel holds its own reference
		}
		if h.closed != nil {
			h.closed()
		}
		// Close waits for in-flight read-ahead; do not hold up the kernel.
		// The content stays counted open until the reader is closed.
		go func() {
			h.r.Close()
			f.o.OpenImages.release(f.root)
		}()
	}
	return 0
}

func (f *imageFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*handle)
	if !ok {
		return nil, syscall.EBADF
	}
	if off >= f.size {
		return fuse.ReadResultData(nil), 0
	}
	f.st.reads.Add(1)
	if h.copy != nil {
		// No passthrough (refused by the kernel or turned off): read the
		// local copy ourselves.
		n := min(int64(len(dest)), f.size-off)
		f.st.readBytes.Add(n)
		return fuse.ReadResultFd(h.copy.Fd(), off, int(n)), 0
	}
	// The chunk cache's own slices go straight into the reply (writev):
	// no copy into dest. They are lent: go-fuse calls Done once the reply
	// is written, and the cache may then recycle their buffers.
	vecs, n, held, err := h.r.SlicesHeld(ctx, off, len(dest), make([][]byte, 0, 24))
	if err != nil && !errors.Is(err, io.EOF) {
		held.Release()
		return nil, errnoFor(f.o.Logger, "read", f.id, err)
	}
	f.st.readBytes.Add(int64(n))
	return &heldResult{vecs: vecs, n: n, held: held}, 0
}

// heldResult is a vectored read reply over lent chunk-cache slices. It has
// the method set of go-fuse's vectored results (Slices, used for writev;
// Bytes otherwise) and releases the slices in Done, which go-fuse calls
// after the reply is written, whichever way it was written.
type heldResult struct {
	vecs [][]byte
	n    int
	held *engine.Held
}

func (r *heldResult) Size() int { return r.n }

func (r *heldResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, v := range r.vecs {
		buf = append(buf, v...)
	}
	return buf, fuse.OK
}

func (r *heldResult) Slices() ([][]byte, fuse.Status) { return r.vecs, fuse.OK }

func (r *heldResult) Done() {
	r.vecs = nil
	r.held.Release()
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the manifest: zero runs (never
// stored) are holes. The kernel handles the other whence values itself.
func (f *imageFile) Lseek(ctx context.Context, fh fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	l := f.layout.Load()
	if l == nil {
		return 0, syscall.EBADF // only reachable through an open file
	}
	if int64(off) >= f.size || int64(off) < 0 {
		return 0, syscall.ENXIO
	}
	switch whence {
	case seekData:
		if next, ok := l.next(int64(off), false); ok {
			return uint64(next), 0
		}
		return 0, syscall.ENXIO
	case seekHole:
		if next, ok := l.next(int64(off), true); ok {
			return uint64(next), 0
		}
		return uint64(f.size), 0 // the implicit hole at end of file
	}
	return 0, syscall.EINVAL
}

// Values of whence for lseek(2) on Linux.
const (
	seekData = 3
	seekHole = 4
)

// layout is a manifest reduced to alternating data and zero extents.
type layout struct {
	starts    []int64 // extent start offsets, ascending; starts[0] == 0
	zero      []bool  // whether each extent is a zero run
	dataBytes int64
}

func newLayout(m *engine.Manifest) *layout {
	l := &layout{}
	for _, c := range m.Chunks {
		z := c.ID.IsZero()
		if !z {
			l.dataBytes += int64(c.Size)
		}
		if n := len(l.zero); n > 0 && l.zero[n-1] == z {
			continue
		}
		l.starts = append(l.starts, c.Offset)
		l.zero = append(l.zero, z)
	}
	return l
}

// next returns the first offset at or after off inside an extent whose
// zero-ness is wantZero.
func (l *layout) next(off int64, wantZero bool) (int64, bool) {
	i := sort.Search(len(l.starts), func(i int) bool { return l.starts[i] > off }) - 1
	if i < 0 {
		return 0, false
	}
	if l.zero[i] == wantZero {
		return off, true
	}
	if i+1 < len(l.starts) { // extents alternate
		return l.starts[i+1], true
	}
	return 0, false
}

// xattrPrefix is the namespace of Mosaic's extended attributes.
const xattrPrefix = "user.mosaic."

// xattrs returns the image's extended attributes, in a fixed order.
func (f *imageFile) xattrs(img *engine.Image) [][2]string {
	name := ""
	if img.Name != nil {
		name = *img.Name
	}
	all := [][2]string{
		{"id", img.ID},
		{"name", name},
		{"status", string(img.Status)},
		{"disk_format", img.DiskFormat},
		{"container_format", img.ContainerFormat},
		{"checksum", img.Checksum},
		{"os_hash_algo", img.OSHashAlgo},
		{"os_hash_value", img.OSHashValue},
		{"signature", f.signatureStatus(img)},
	}
	out := all[:0]
	for _, kv := range all {
		if kv[1] != "" {
			out = append(out, [2]string{xattrPrefix + kv[0], kv[1]})
		}
	}
	return out
}

func (f *imageFile) record(ctx context.Context) (*engine.Image, syscall.Errno) {
	img, err := f.src.Get(engine.LocalRead(ctx), f.id)
	if err != nil {
		return nil, errnoFor(f.o.Logger, "getxattr", f.id, err)
	}
	if img.ManifestRoot != f.root {
		return nil, syscall.ENOENT
	}
	return img, 0
}

func (f *imageFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, xattrPrefix) {
		return 0, syscall.ENODATA
	}
	img, errno := f.record(ctx)
	if errno != 0 {
		return 0, errno
	}
	for _, kv := range f.xattrs(img) {
		if kv[0] == attr {
			return copyXattr(dest, kv[1])
		}
	}
	return 0, syscall.ENODATA
}

func (f *imageFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	img, errno := f.record(ctx)
	if errno != 0 {
		return 0, errno
	}
	var b strings.Builder
	for _, kv := range f.xattrs(img) {
		b.WriteString(kv[0])
		b.WriteByte(0)
	}
	return copyXattr(dest, b.String())
}

// copyXattr follows getxattr(2): a zero-length dest asks for the size.
func copyXattr(dest []byte, v string) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}
