package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// ServiceConfig configures the image service.
type ServiceConfig struct {
	// NodeID names this node in upload records.
	NodeID string
	// OSHashAlgo is Glance's hashing_algorithm (sha512 by default).
	OSHashAlgo string
	// ImageSizeCap is Glance's image_size_cap; 0 means 1 TiB.
	ImageSizeCap int64
	Ingest       IngestConfig
	Reader       ReaderConfig
	// Import filters web-download URIs (Glance's import_filtering_opts).
	Import ImportConfig
	// ChunkCacheBytes bounds the decoded-chunk cache; 0 means 256 MiB.
	ChunkCacheBytes int64
	// Certificates resolves img_signature_certificate_uuid (the key
	// manager); nil refuses uploads of signed images.
	Certificates CertificateSource
	// Now and NewID may be replaced in tests.
	Now   func() time.Time
	NewID func() string
}

// Validate fills defaults and checks the configuration.
func (c *ServiceConfig) Validate() error {
	if c.NodeID == "" {
		return errors.New("service config: empty node ID")
	}
	if _, err := NewOSHash(c.OSHashAlgo); err != nil {
		return fmt.Errorf("service config: %w", err)
	}
	if c.OSHashAlgo == "" {
		c.OSHashAlgo = "sha512"
	}
	if c.ImageSizeCap <= 0 {
		c.ImageSizeCap = 1 << 40
	}
	if c.ChunkCacheBytes <= 0 {
		c.ChunkCacheBytes = 256 << 20
	}
	if c.Reader == (ReaderConfig{}) {
		c.Reader = DefaultReaderConfig()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.NewID == nil {
		c.NewID = func() string { return uuid.NewString() }
	}
	return c.Ingest.Validate()
}

// Service is the image domain: records, their state machine, and their
// content. HTTP and FUSE edges are thin layers over it. Safe for concurrent use.
type Service struct {
	cfg      ServiceConfig
	images   ImageStore
	chunks   ChunkStore
	pins     *Pins
	ingester *Ingester
	cache    *ChunkCache
	log      *slog.Logger

	mu        sync.Mutex
	manifests map[ChunkID]*Manifest // small cache of loaded manifests

	bg backgroundTasks // import tasks running on this node

	// incarnation is random per process: upload references and tasks
	// started by this process carry it, so one left behind by an earlier
	// run of this node (a crash) is told apart from a live one.
	incarnation string
}

// NewService returns a Service over the given stores. pins may be shared
// with the garbage collector (nil: a private set).
func NewService(cfg ServiceConfig, images ImageStore, chunks ChunkStore, pins *Pins, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pins == nil {
		pins = NewPins()
	}
	ing, err := NewIngester(chunks, pins, cfg.Ingest)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg: cfg, images: images, chunks: chunks, pins: pins, ingester: ing,
		cache: NewChunkCache(cfg.ChunkCacheBytes), log: log,
		manifests: map[ChunkID]*Manifest{}, incarnation: nonce(),
	}, nil
}

// newUploadRef names an upload (or stage) run by this process.
func (s *Service) newUploadRef() *UploadRef {
	return &UploadRef{Node: s.cfg.NodeID, Nonce: s.incarnation + "." + nonce(), Started: s.now()}
}

// orphaned reports whether ref names an upload this node started in an
// earlier run: it died with that process and nothing will finish it.
func (s *Service) orphaned(ref *UploadRef) bool {
	return ref != nil && ref.Node == s.cfg.NodeID && !strings.HasPrefix(ref.Nonce, s.incarnation+".")
}

// orphanedTask reports whether t was being run by an earlier run of this
// node.
func (s *Service) orphanedTask(t *Task) bool {
	return t.Node == s.cfg.NodeID && t.Incarnation != s.incarnation
}

// Config returns the validated configuration.
func (s *Service) Config() ServiceConfig { return s.cfg }

// ChunkCache returns the shared decoded-chunk cache.
func (s *Service) ChunkCache() *ChunkCache { return s.cache }

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Second) }

// Create stores a new queued image. img carries the client's attributes,
// already validated by the caller (see ValidateNew); server-managed fields
// are overwritten.
func (s *Service) Create(ctx context.Context, img *Image) (*Image, error) {
	img = img.Clone()
	if img.ID == "" {
		img.ID = s.cfg.NewID()
	}
	if img.Visibility == "" {
		img.Visibility = VisibilityShared
	}
	if img.Tags == nil {
		img.Tags = []string{}
	}
	now := s.now()
	img.Status = StatusQueued
	img.CreatedAt, img.UpdatedAt = now, now
	img.Size, img.VirtualSize = nil, nil
	img.Checksum, img.OSHashAlgo, img.OSHashValue = "", "", ""
	img.ManifestRoot = ChunkID{}
	img.Upload, img.Signature, img.DeletedAt = nil, nil, nil
	if err := checkSignatureEdit(nil, img); err != nil {
		return nil, err
	}
	out, err := s.images.CreateImage(ctx, img)
	if errors.Is(err, ErrExists) {
		return nil, Errorf(ErrExists, "Image ID %s already exists!", img.ID)
	}
	return out, err
}

// Get returns a visible (not deleted) image. An image left in saving by an
// upload this node was running when it crashed is returned to queued first,
// so no reader sees a dead upload as in progress (RecoverUploads does the
// same for all of them once the node has a leader).
func (s *Service) Get(ctx context.Context, id string) (*Image, error) {
	img, err := s.lookup(ctx, id)
	if err == nil && img.Status == StatusSaving && s.orphaned(img.Upload) {
		s.restoreQueued(id, img.Upload, errors.New("node restarted during upload"))
		img, err = s.lookup(ctx, id)
	}
	return img, err
}

// lookup returns a visible image as stored.
func (s *Service) lookup(ctx context.Context, id string) (*Image, error) {
	img, err := s.images.GetImage(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && img.Status == StatusDeleted) {
		return nil, Errorf(ErrNotFound, "No image found with ID %s", id)
	}
	return img, err
}

// List returns the images (deleted ones excluded) for which match is true.
func (s *Service) List(ctx context.Context, match func(*Image) bool) ([]*Image, error) {
	return s.images.ListImages(ctx, func(img *Image) bool {
		return img.Status != StatusDeleted && (match == nil || match(img))
	})
}

// Update applies mutate to the current record and commits it with
// compare-and-set, retrying when another writer got there first. mutate may
// be called more than once and must not keep the image.
func (s *Service) Update(ctx context.Context, id string, mutate func(*Image) error) (*Image, error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.lookup(ctx, id)
		if err != nil {
			return nil, err
		}
		next := cur.Clone()
		if err := mutate(next); err != nil {
			return nil, err
		}
		if err := checkSignatureEdit(cur, next); err != nil {
			return nil, err
		}
		next.UpdatedAt = s.now()
		out, err := s.images.UpdateImage(ctx, next, cur.Revision)
		if errors.Is(err, ErrConflict) && attempt < 50 {
			continue
		}
		if errors.Is(err, ErrNotFound) {
			return nil, Errorf(ErrNotFound, "No image found with ID %s", id)
		}
		return out, err
	}
}

// transition moves an image from one status to another with
// compare-and-set on the status, as Glance's save(from_state=...).
func (s *Service) transition(ctx context.Context, id string, from, to Status, mutate func(*Image)) (*Image, error) {
	return s.Update(ctx, id, func(img *Image) error {
		if img.Status != from {
			return Errorf(ErrConflict, "Image status transition from %s to %s is not allowed", img.Status, to)
		}
		if !CanTransition(from, to) {
			return Errorf(ErrConflict, "Image status transition from %s to %s is not allowed", from, to)
		}
		img.Status = to
		if to == StatusQueued {
			img.Size, img.VirtualSize = nil, nil
		}
		if mutate != nil {
			mutate(img)
		}
		return nil
	})
}

// Delete marks the image deleted. Its content becomes garbage for GC. The
// record stays as a tombstone so the ID is never reused, as in Glance.
func (s *Service) Delete(ctx context.Context, id string) error {
	_, err := s.Update(ctx, id, func(img *Image) error {
		if img.Protected {
			return Errorf(ErrForbidden, "Image %s is protected and cannot be deleted.", id)
		}
		now := s.now()
		img.Status = StatusDeleted
		img.DeletedAt = &now
		img.Upload = nil
		return nil
	})
	return err
}

// Upload stores r as the content of a queued image and makes it active.
// On failure the image returns to queued and the chunks written become
// garbage. A signed image (img_signature* properties) becomes active only if
// its signature verifies over the uploaded stream; otherwise it is killed.
func (s *Service) Upload(ctx context.Context, id string, r io.Reader) (*Image, error) {
	img, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if img.Status != StatusQueued {
		return nil, Errorf(ErrConflict, "Image status transition from %s to saving is not allowed", img.Status)
	}
	if img.DiskFormat == "" || img.ContainerFormat == "" {
		return nil, Errorf(ErrInvalid, "Properties disk_format, container_format must be set prior to saving data.")
	}
	sig, err := s.prepareSignature(ctx, img)
	if err != nil {
		return nil, err
	}
	ref := s.newUploadRef()
	if _, err := s.transition(ctx, id, StatusQueued, StatusSaving, func(img *Image) { img.Upload = ref }); err != nil {
		if errors.Is(err, ErrConflict) {
			// Another upload won the race (Glance answers 410 here).
			return nil, Errorf(ErrGone, "Image %s could not be found after upload. The image may have been deleted during the upload.", id)
		}
		return nil, err
	}
	algo := img.OSHashAlgo
	if algo == "" {
		algo = s.cfg.OSHashAlgo
	}
	// The pins outlive Ingest: they protect the chunks from GC until the
	// record that refers to them is committed (or the upload has failed).
	pins := s.pins.Begin()
	defer pins.End()
	res, err := s.ingester.Ingest(ctx, r, IngestOptions{OSHashAlgo: algo, MaxSize: s.cfg.ImageSizeCap,
		SignatureHash: sig.hash(), Pins: pins})
	if err != nil {
		s.restoreQueued(id, ref, err)
		return nil, err
	}
	if err := sig.verify(res, s.cfg.Now()); err != nil {
		return nil, s.killUpload(id, ref, sig, err)
	}
	out, err := s.Update(ctx, id, func(img *Image) error {
		if img.Status != StatusSaving || img.Upload == nil || *img.Upload != *ref {
			return Errorf(ErrGone, "Image %s could not be found after upload. The image may have been deleted during the upload.", id)
		}
		size := res.Size
		img.Status = StatusActive
		img.Size = &size
		if img.DiskFormat == "raw" && img.ContainerFormat == "bare" {
			vs := size
			img.VirtualSize = &vs
		}
		img.Checksum = hex.EncodeToString(res.MD5)
		img.OSHashAlgo = res.OSHashAlgo
		img.OSHashValue = hex.EncodeToString(res.OSHash)
		img.ManifestRoot = res.Root
		img.Upload = nil
		img.Signature = sig.result()
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrGone) && !errors.Is(err, ErrNotFound) {
			s.restoreQueued(id, ref, err)
		}
		return nil, err
	}
	s.log.Info("image uploaded", "image", id, "size", res.Size, "chunks", len(res.Manifest.Chunks),
		"new_chunks", res.NewChunks, "new_bytes", res.NewBytes, "zero_bytes", res.ZeroBytes,
		"known_content", res.Known, "hashed_bytes", res.HashedBytes)
	return out, nil
}

// restoreQueued returns an image whose upload failed to queued, if the
// upload still owns it.
func (s *Service) restoreQueued(id string, ref *UploadRef, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Update(ctx, id, func(img *Image) error {
		if img.Status != StatusSaving || img.Upload == nil || *img.Upload != *ref {
			return errAbandon
		}
		img.Status = StatusQueued
		img.Size, img.VirtualSize = nil, nil
		img.Upload = nil
		return nil
	})
	if err != nil && !errors.Is(err, errAbandon) {
		s.log.Error("restore image to queued after failed upload", "image", id, "cause", cause, "err", err)
		return
	}
	s.log.Warn("upload failed; image back to queued", "image", id, "err", cause)
}

var errAbandon = errors.New("abandon update")

// RecoverUploads resets images left in saving by uploads of this node that
// died with it (a crash or restart), as Glance does on failure. Uploads this
// process started are left alone, however soon after the start it runs.
func (s *Service) RecoverUploads(ctx context.Context) error {
	stale, err := s.images.ListImages(ctx, func(img *Image) bool {
		return img.Status == StatusSaving && s.orphaned(img.Upload)
	})
	if err != nil {
		return fmt.Errorf("recover uploads: %w", err)
	}
	for _, img := range stale {
		s.restoreQueued(img.ID, img.Upload, errors.New("node restarted during upload"))
	}
	return nil
}

// Open returns a reader over an image's content and the record it belongs
// to. Images without data answer ErrNotFound with a "no data" message.
func (s *Service) Open(ctx context.Context, id string) (*ImageReader, *Image, error) {
	img, err := s.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.OpenRecord(ctx, img)
	return r, img, err
}

// ErrNoData is returned by OpenRecord for an image without content.
var ErrNoData = Errorf(ErrNotFound, "The image has no data.")

// OpenRecord returns a reader over the content of a record already read.
func (s *Service) OpenRecord(ctx context.Context, img *Image) (*ImageReader, error) {
	if !img.HasData() || (img.Status != StatusActive && img.Status != StatusDeactivated) {
		return nil, ErrNoData
	}
	m, err := s.Manifest(ctx, img.ManifestRoot)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", img.ID, err)
	}
	return NewImageReader(m, s.chunks, s.cache, s.cfg.Reader), nil
}

// Manifest loads (or returns a cached copy of) the manifest rooted at root.
func (s *Service) Manifest(ctx context.Context, root ChunkID) (*Manifest, error) {
	s.mu.Lock()
	m, ok := s.manifests[root]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := LoadManifest(ctx, s.chunks, root)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.manifests) >= 256 {
		for k := range s.manifests { // drop an arbitrary entry
			delete(s.manifests, k)
			break
		}
	}
	s.manifests[root] = m
	s.mu.Unlock()
	return m, nil
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
