package fusefs

import (
	"context"

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

// checkSignature is the hook Open calls: nil unless the mount verifies
// signatures and img's does not verify.
func (f *imageFile) checkSignature(ctx context.Context, img *engine.Image) error {
	if f.o.Signatures == nil {
		return nil
	}
	return f.o.Signatures.CheckOpen(engine.LocalRead(ctx), img)
}

// signatureStatus is the value of user.mosaic.signature: "unsigned",
// "verified: ...", "failed: <reason>" or "unverified: <reason>".
func (f *imageFile) signatureStatus(img *engine.Image) string {
	if f.o.Signatures != nil {
		return f.o.Signatures.Status(img)
	}
	return engine.SignatureStatus(img)
}
