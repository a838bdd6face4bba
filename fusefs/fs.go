package fusefs

import (
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/mosaicimg/mosaic/engine"
)

// Root is the root of the tree. Mount mounts it; tests may drive its nodes
// without a mount.
type Root struct {
	fs.Inode
	src ImageSource
	o   Options

	images *imagesDir
	byName *byNameDir
	st     stats
}

// stats are the tree's counters.
type stats struct {
	reads, readBytes, copyOpens atomic.Int64
}

// Stats are a mounted tree's counters.
type Stats struct {
	// Reads and ReadBytes count the READ requests the file system served
	// (page cache hits and passthrough reads never reach it).
	Reads, ReadBytes int64
	// CopyOpens counts opens that found a complete local copy (served by
	// FUSE passthrough where the kernel allows it).
	CopyOpens int64
}

// Stats returns the tree's counters.
func (r *Root) Stats() Stats {
	return Stats{Reads: r.st.reads.Load(), ReadBytes: r.st.readBytes.Load(), CopyOpens: r.st.copyOpens.Load()}
}

var (
	_ = (fs.NodeOnAdder)((*Root)(nil))
	_ = (fs.NodeGetattrer)((*Root)(nil))
)

// NewRoot returns the root of the tree.
func NewRoot(src ImageSource, o Options) (*Root, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := &Root{src: src, o: o}
	r.images = &imagesDir{src: src, o: o, st: &r.st}
	r.byName = &byNameDir{src: src, o: o}
	return r, nil
}

// OnAdd builds the fixed part of the tree.
func (r *Root) OnAdd(ctx context.Context) {
	r.AddChild("images", r.NewPersistentInode(ctx, r.images, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: 2}), false)
	r.AddChild("by-name", r.NewPersistentInode(ctx, r.byName, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: 3}), false)
}

// Getattr reports a read-only directory.
func (r *Root) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr)
	out.SetTimeout(r.o.AttrTimeout)
	return 0
}

func dirAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
}

// shown reports whether an image appears under images/: it has content
// and is active or deactivated (listed, but refused at open).
func shown(img *engine.Image) bool {
	return img.HasData() && img.Size != nil &&
		(img.Status == engine.StatusActive || img.Status == engine.StatusDeactivated)
}

// imagesDir lists images by ID.
type imagesDir struct {
	fs.Inode
	src ImageSource
	o   Options
	st  *stats
}

var (
	_ = (fs.NodeLookuper)((*imagesDir)(nil))
	_ = (fs.NodeReaddirer)((*imagesDir)(nil))
	_ = (fs.NodeGetattrer)((*imagesDir)(nil))
)

func (d *imagesDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr)
	out.SetTimeout(d.o.AttrTimeout)
	return 0
}

func (d *imagesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	img, err := d.src.Get(engine.LocalRead(ctx), name)
	if err != nil {
		return nil, errnoFor(d.o.Logger, "lookup", name, err)
	}
	if !shown(img) {
		return nil, syscall.ENOENT
	}
	f := newImageFile(d.src, d.o, d.st, img)
	f.fillAttr(&out.Attr)
	out.SetEntryTimeout(d.o.EntryTimeout)
	out.SetAttrTimeout(d.o.AttrTimeout)
	return d.NewInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG, Ino: inoFor("image", img.ID, img.ManifestRoot.String())}), 0
}

func (d *imagesDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	imgs, err := d.src.List(engine.LocalRead(ctx), shown)
	if err != nil {
		return nil, errnoFor(d.o.Logger, "readdir", "images", err)
	}
	entries := make([]fuse.DirEntry, 0, len(imgs))
	for _, img := range imgs {
		entries = append(entries, fuse.DirEntry{Name: img.ID, Mode: syscall.S_IFREG,
			Ino: inoFor("image", img.ID, img.ManifestRoot.String())})
	}
	return fs.NewListDirStream(entries), 0
}

// byNameDir holds a symlink per active image whose name is unique among
// active images and usable as a file name.
type byNameDir struct {
	fs.Inode
	src ImageSource
	o   Options
}

var (
	_ = (fs.NodeLookuper)((*byNameDir)(nil))
	_ = (fs.NodeReaddirer)((*byNameDir)(nil))
	_ = (fs.NodeGetattrer)((*byNameDir)(nil))
)

func (d *byNameDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr)
	out.SetTimeout(d.o.AttrTimeout)
	return 0
}

// uniqueNames maps each usable name held by exactly one active image to
// that image's ID.
func uniqueNames(imgs []*engine.Image) map[string]string {
	ids := make(map[string]string, len(imgs))
	dup := map[string]bool{}
	for _, img := range imgs {
		if img.Status != engine.StatusActive || !shown(img) || img.Name == nil || !usableName(*img.Name) {
			continue
		}
		n := *img.Name
		if _, seen := ids[n]; seen {
			dup[n] = true
		}
		ids[n] = img.ID
	}
	for n := range dup {
		delete(ids, n)
	}
	return ids
}

// usableName reports whether s can be a directory entry.
func usableName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 255 && !strings.ContainsAny(s, "/\x00")
}

func (d *byNameDir) names(ctx context.Context) (map[string]string, error) {
	imgs, err := d.src.List(engine.LocalRead(ctx), func(img *engine.Image) bool {
		return img.Status == engine.StatusActive && img.Name != nil
	})
	if err != nil {
		return nil, err
	}
	return uniqueNames(imgs), nil
}

func (d *byNameDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	names, err := d.names(ctx)
	if err != nil {
		return nil, errnoFor(d.o.Logger, "lookup", "by-name/"+name, err)
	}
	id, ok := names[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	l := &link{target: "../images/" + id, timeout: d.o.AttrTimeout}
	l.fillAttr(&out.Attr)
	out.SetEntryTimeout(d.o.EntryTimeout)
	out.SetAttrTimeout(d.o.AttrTimeout)
	return d.NewInode(ctx, l, fs.StableAttr{Mode: syscall.S_IFLNK, Ino: inoFor("link", name, id)}), 0
}

func (d *byNameDir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	names, err := d.names(ctx)
	if err != nil {
		return nil, errnoFor(d.o.Logger, "readdir", "by-name", err)
	}
	entries := make([]fuse.DirEntry, 0, len(names))
	for n, id := range names {
		entries = append(entries, fuse.DirEntry{Name: n, Mode: syscall.S_IFLNK, Ino: inoFor("link", n, id)})
	}
	return fs.NewListDirStream(entries), 0
}

// link is a by-name symlink; its target never changes (a renamed image
// gets a new inode).
type link struct {
	fs.Inode
	target  string
	timeout time.Duration
}

var (
	_ = (fs.NodeReadlinker)((*link)(nil))
	_ = (fs.NodeGetattrer)((*link)(nil))
)

func (l *link) fillAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFLNK | 0o777
	a.Size = uint64(len(l.target))
	a.Nlink = 1
}

func (l *link) Readlink(ctx context.Context) ([]byte, syscall.Errno) { return []byte(l.target), 0 }

func (l *link) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.fillAttr(&out.Attr)
	out.SetTimeout(l.timeout)
	return 0
}

// inoFor derives a stable inode number from the parts naming a node's
// immutable content.
func inoFor(parts ...string) uint64 {
	id := engine.SumChunk([]byte(strings.Join(parts, "\x00")))
	// Stay clear of go-fuse's automatic numbers, the root and our fixed dirs.
	return binary.BigEndian.Uint64(id[:8])&^(1<<63) | 1<<62
}
