package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/mosaicimg/mosaic/engine"
)

// SignatureChecker verifies signed images before they are opened (the
// mount's --verify-signatures) and describes their signature status;
// *engine.SignatureGate implements it.
type SignatureChecker interface {
	// CheckOpen returns nil if img may be opened, an error matching
	// engine.ErrForbidden (EACCES) with the reason if its signature does
	// not verify.
	CheckOpen(ctx context.Context, img *engine.Image) error
	// Status is the value of the user.mosaic.signature xattr.
	Status(img *engine.Image) string
}

// xattrSignature holds an image's signature status: "unsigned",
// "verified: ...", "failed: <reason>" or "unverified: <reason>".
const xattrSignature = "user.mosaic.signature"

// checkSignature is the hook Open calls: nil unless the mount verifies
// signatures and img's does not verify.
func (f *imageFile) checkSignature(ctx context.Context, img *engine.Image) error {
	if f.o.Signatures == nil {
		return nil
	}
	return f.o.Signatures.CheckOpen(engine.LocalRead(ctx), img)
}

var (
	_ = (fs.NodeGetxattrer)((*imageFile)(nil))
	_ = (fs.NodeListxattrer)((*imageFile)(nil))
)

// Getxattr serves user.mosaic.signature.
func (f *imageFile) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != xattrSignature {
		return 0, syscall.ENODATA
	}
	img, err := f.src.Get(engine.LocalRead(ctx), f.id)
	if err != nil {
		return 0, errnoFor(f.o.Logger, "getxattr", f.id, err)
	}
	v := engine.SignatureStatus(img)
	if f.o.Signatures != nil {
		v = f.o.Signatures.Status(img)
	}
	return copyXattr(dest, []byte(v))
}

// Listxattr lists the attributes Getxattr serves.
func (f *imageFile) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return copyXattr(dest, []byte(xattrSignature+"\x00"))
}

// copyXattr follows getxattr(2): a zero-length dest asks for the size.
func copyXattr(dest, v []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}
