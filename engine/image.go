package engine

import (
	"maps"
	"slices"
	"time"
)

// Status is an image's place in Glance's state machine.
type Status string

// Glance v2 image statuses.
const (
	StatusQueued        Status = "queued"
	StatusSaving        Status = "saving"
	StatusUploading     Status = "uploading"
	StatusImporting     Status = "importing"
	StatusActive        Status = "active"
	StatusDeactivated   Status = "deactivated"
	StatusKilled        Status = "killed"
	StatusDeleted       Status = "deleted"
	StatusPendingDelete Status = "pending_delete"
)

// validTransitions is Glance's Image.valid_state_targets table.
var validTransitions = map[Status][]Status{
	StatusQueued:        {StatusSaving, StatusUploading, StatusImporting, StatusActive, StatusDeleted},
	StatusSaving:        {StatusActive, StatusKilled, StatusDeleted, StatusQueued},
	StatusUploading:     {StatusImporting, StatusQueued, StatusDeleted},
	StatusImporting:     {StatusActive, StatusDeleted, StatusQueued},
	StatusActive:        {StatusPendingDelete, StatusDeleted, StatusDeactivated},
	StatusKilled:        {StatusDeleted},
	StatusPendingDelete: {StatusDeleted, StatusActive},
	StatusDeleted:       nil,
	StatusDeactivated:   {StatusActive, StatusDeleted},
}

// CanTransition reports whether Glance allows an image to move from one
// status to another.
func CanTransition(from, to Status) bool {
	return slices.Contains(validTransitions[from], to)
}

// Visibility values.
const (
	VisibilityPublic    = "public"
	VisibilityPrivate   = "private"
	VisibilityShared    = "shared"
	VisibilityCommunity = "community"
)

// Image is an image record as replicated by the metadata store: every Glance
// attribute plus Mosaic's internal fields. Optional Glance attributes that
// can be null are pointers (or empty strings for enumerations, where the
// empty string is never a valid value). An Image value read from a store is
// a copy the caller may modify; use Clone before sharing one.
type Image struct {
	ID              string            `json:"id"`
	Name            *string           `json:"name,omitempty"`
	Status          Status            `json:"status"`
	Visibility      string            `json:"visibility"`
	Protected       bool              `json:"protected,omitempty"`
	OSHidden        bool              `json:"os_hidden,omitempty"`
	Owner           string            `json:"owner,omitempty"`
	DiskFormat      string            `json:"disk_format,omitempty"`
	ContainerFormat string            `json:"container_format,omitempty"`
	MinDisk         int64             `json:"min_disk,omitempty"`
	MinRAM          int64             `json:"min_ram,omitempty"`
	Size            *int64            `json:"size,omitempty"`
	VirtualSize     *int64            `json:"virtual_size,omitempty"`
	Checksum        string            `json:"checksum,omitempty"`
	OSHashAlgo      string            `json:"os_hash_algo,omitempty"`
	OSHashValue     string            `json:"os_hash_value,omitempty"`
	Tags            []string          `json:"tags,omitempty"`
	Properties      map[string]string `json:"properties,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
	DeletedAt       *time.Time        `json:"deleted_at,omitempty"`

	// ManifestRoot is the ID of the manifest root blob; zero until the
	// image has data.
	ManifestRoot ChunkID `json:"manifest_root,omitzero"`
	// Revision increases by one with every committed change; updates are
	// compare-and-set on it.
	Revision uint64 `json:"revision"`
	// Upload identifies the upload that moved the image to saving (node ID
	// and a nonce), so a restarted node can tell its own stale uploads.
	Upload *UploadRef `json:"upload,omitempty"`
	// Signature is the result of signature verification, if any was done.
	Signature *SignatureResult `json:"signature,omitempty"`
	// Staged is data stored by PUT /stage, waiting for a glance-direct import.
	Staged *StagedData `json:"staged,omitempty"`
}

// StagedData is content ingested by a stage request: already chunked,
// hashed and durable, so the glance-direct import only commits it.
type StagedData struct {
	Root        ChunkID `json:"root"`
	Size        int64   `json:"size"`
	Checksum    string  `json:"checksum"`
	OSHashAlgo  string  `json:"os_hash_algo"`
	OSHashValue string  `json:"os_hash_value"`
}

// UploadRef names a live upload.
type UploadRef struct {
	Node    string    `json:"node"`
	Nonce   string    `json:"nonce"`
	Started time.Time `json:"started"`
}

// SignatureResult records how an image's signature was checked at upload.
type SignatureResult struct {
	Verified bool   `json:"verified"`
	Reason   string `json:"reason,omitempty"`
	// Fingerprint identifies the img_signature* values that were checked
	// (SignatureSpec.Fingerprint), so a later change of them is noticed.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Clone returns a deep copy of img.
func (img *Image) Clone() *Image {
	c := *img
	if img.Name != nil {
		n := *img.Name
		c.Name = &n
	}
	if img.Size != nil {
		v := *img.Size
		c.Size = &v
	}
	if img.VirtualSize != nil {
		v := *img.VirtualSize
		c.VirtualSize = &v
	}
	if img.DeletedAt != nil {
		v := *img.DeletedAt
		c.DeletedAt = &v
	}
	if img.Upload != nil {
		v := *img.Upload
		c.Upload = &v
	}
	if img.Signature != nil {
		v := *img.Signature
		c.Signature = &v
	}
	if img.Staged != nil {
		v := *img.Staged
		c.Staged = &v
	}
	c.Tags = slices.Clone(img.Tags)
	c.Properties = maps.Clone(img.Properties)
	return &c
}

// HasData reports whether the image has committed content.
func (img *Image) HasData() bool { return !img.ManifestRoot.IsZero() }
