package fusefs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/mosaicimg/mosaic/engine"
)

// ImageSource is what the tree needs from the engine; *engine.Service
// implements it.
type ImageSource interface {
	Get(ctx context.Context, id string) (*engine.Image, error)
	List(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error)
	OpenRecord(ctx context.Context, img *engine.Image) (*engine.ImageReader, error)
}

// Options configure the tree and its mount.
type Options struct {
	Logger *slog.Logger
	// EntryTimeout is how long the kernel may cache a name lookup; it
	// bounds how long a deleted image stays visible.
	EntryTimeout time.Duration
	// AttrTimeout is how long the kernel may cache attributes. Content is
	// immutable, so this can be long.
	AttrTimeout time.Duration
	// Signatures, if set, verifies signed images at open (EACCES when the
	// signature does not verify) and reports user.mosaic.signature.
	Signatures SignatureChecker
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.EntryTimeout == 0 {
		o.EntryTimeout = time.Second
	}
	if o.AttrTimeout == 0 {
		o.AttrTimeout = time.Hour
	}
}

type root struct {
	fs.Inode
	src ImageSource
	o   Options
}

var _ = (fs.NodeOnAdder)((*root)(nil))

// NewRoot returns the root of the tree.
func NewRoot(src ImageSource, o Options) fs.InodeEmbedder {
	o.defaults()
	return &root{src: src, o: o}
}

func (r *root) OnAdd(ctx context.Context) {
	dir := &imagesDir{src: r.src, o: r.o, files: map[string]*imageFile{}}
	r.AddChild("images", r.NewPersistentInode(ctx, dir, fs.StableAttr{Mode: syscall.S_IFDIR}), false)
}

// imagesDir lists active images by ID.
type imagesDir struct {
	fs.Inode
	src ImageSource
	o   Options

	mu    sync.Mutex
	files map[string]*imageFile
}

var (
	_ = (fs.NodeLookuper)((*imagesDir)(nil))
	_ = (fs.NodeReaddirer)((*imagesDir)(nil))
)

func visible(img *engine.Image) bool {
	return img.Status == engine.StatusActive || img.Status == engine.StatusDeactivated
}

func (d *imagesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	img, err := d.src.Get(engine.LocalRead(ctx), name)
	if err != nil {
		return nil, errnoFor(d.o.Logger, "lookup", name, err)
	}
	if !visible(img) || !img.HasData() {
		return nil, syscall.ENOENT
	}
	f := d.file(img)
	f.fillAttr(&out.Attr)
	out.SetEntryTimeout(d.o.EntryTimeout)
	out.SetAttrTimeout(d.o.AttrTimeout)
	return d.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoFor(img)}), 0
}

// file returns the node for an image, one per (image, manifest).
func (d *imagesDir) file(img *engine.Image) *imageFile {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.files[img.ID]
	if !ok || f.root != img.ManifestRoot {
		f = &imageFile{src: d.src, o: d.o, id: img.ID, root: img.ManifestRoot, size: *img.Size, mtime: img.UpdatedAt}
		d.files[img.ID] = f
	}
	return f
}

func (d *imagesDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	imgs, err := d.src.List(engine.LocalRead(ctx), func(img *engine.Image) bool { return visible(img) && img.HasData() })
	if err != nil {
		return nil, errnoFor(d.o.Logger, "readdir", "images", err)
	}
	entries := make([]fuse.DirEntry, 0, len(imgs))
	for _, img := range imgs {
		entries = append(entries, fuse.DirEntry{Name: img.ID, Mode: syscall.S_IFREG, Ino: inoFor(img)})
	}
	return fs.NewListDirStream(entries), 0
}

// inoFor derives a stable inode number from the image ID and manifest.
func inoFor(img *engine.Image) uint64 {
	id := engine.SumChunk([]byte(img.ID + "/" + img.ManifestRoot.String()))
	v := uint64(0)
	for _, b := range id[:8] {
		v = v<<8 | uint64(b)
	}
	return v | 1<<62 // stay clear of go-fuse's automatic numbers and the root
}

// imageFile is one image's content.
type imageFile struct {
	fs.Inode
	src   ImageSource
	o     Options
	id    string
	root  engine.ChunkID
	size  int64
	mtime time.Time

	mu     sync.Mutex
	reader *engine.ImageReader
}

var (
	_ = (fs.NodeGetattrer)((*imageFile)(nil))
	_ = (fs.NodeOpener)((*imageFile)(nil))
	_ = (fs.NodeReader)((*imageFile)(nil))
)

func (f *imageFile) fillAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Size = uint64(f.size)
	a.Blocks = (a.Size + 511) / 512
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

func (f *imageFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	img, err := f.src.Get(engine.LocalRead(ctx), f.id)
	if err != nil {
		return nil, 0, errnoFor(f.o.Logger, "open", f.id, err)
	}
	if img.Status == engine.StatusDeactivated {
		return nil, 0, syscall.EACCES
	}
	if img.Status != engine.StatusActive || img.ManifestRoot != f.root {
		return nil, 0, syscall.ENOENT
	}
	if err := f.checkSignature(ctx, img); err != nil {
		return nil, 0, errnoFor(f.o.Logger, "open", f.id, err)
	}
	if _, err := f.readerFor(ctx, img); err != nil {
		return nil, 0, errnoFor(f.o.Logger, "open", f.id, err)
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *imageFile) readerFor(ctx context.Context, img *engine.Image) (*engine.ImageReader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reader != nil {
		return f.reader, nil
	}
	r, err := f.src.OpenRecord(ctx, img)
	if err != nil {
		return nil, err
	}
	f.reader = r
	return r, nil
}

func (f *imageFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.mu.Lock()
	r := f.reader
	f.mu.Unlock()
	if r == nil {
		return nil, syscall.EBADF
	}
	if off >= r.Size() {
		return fuse.ReadResultData(nil), 0
	}
	n, err := r.ReadAtContext(ctx, dest, off)
	if err != nil && n < len(dest) && off+int64(n) < r.Size() {
		return nil, errnoFor(f.o.Logger, "read", f.id, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// errnoFor translates an engine error into an errno, logging it. It is the
// one place errors become errnos.
func errnoFor(log *slog.Logger, op, name string, err error) syscall.Errno {
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, engine.ErrForbidden):
		return syscall.EACCES
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	log.Error("fuse operation failed", "op", op, "name", name, "err", err)
	return syscall.EIO
}
