package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// JSON-patch media types PATCH /v2/images/{id} accepts.
const (
	PatchMediaType   = "application/openstack-images-v2.1-json-patch"
	PatchMediaTypeV0 = "application/openstack-images-v2.0-json-patch"
)

// AcceptPatch is the Accept-Patch header sent with 415 answers.
const AcceptPatch = PatchMediaTypeV0 + ", " + PatchMediaType

// PatchOp is one change of a Glance JSON-patch: add, remove or replace of
// one attribute (Glance allows depth-1 pointers only, except locations).
type PatchOp struct {
	Op string `json:"op"`
	// Attr is the decoded attribute name (the pointer's single segment).
	Attr string `json:"attr"`
	// Value is the raw JSON value (add and replace).
	Value json.RawMessage `json:"value,omitempty"`
	// Legacy is set for the v2.0 media type, where add on an existing
	// attribute is a conflict.
	Legacy bool `json:"legacy,omitempty"`
}

var patchOps = []string{"add", "remove", "replace"}

// ParsePatch parses a JSON-patch body of the given media type and checks
// its structure and pointers (Glance's RequestDeserializer.update). It
// changes nothing.
func ParsePatch(mediaType string, body []byte) ([]PatchOp, error) {
	legacy := false
	switch mediaType {
	case PatchMediaType:
	case PatchMediaTypeV0:
		legacy = true
	default:
		if mediaType == "" {
			mediaType = "text/plain"
		}
		return nil, Errorf(ErrUnsupported, "The request media type %s is not supported by this server.", mediaType)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, Errorf(ErrInvalid, "Body expected in request.")
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || dec.More() {
		return nil, Errorf(ErrInvalid, "Malformed JSON in request body.")
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, Errorf(ErrInvalid, "Request body must be a JSON array of operation objects.")
	}
	ops := make([]PatchOp, 0, len(list))
	for _, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, Errorf(ErrInvalid, "Operations must be JSON objects.")
		}
		op, err := parsePatchOp(obj, legacy)
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func parsePatchOp(obj map[string]any, legacy bool) (PatchOp, error) {
	var op PatchOp
	var path any
	if legacy {
		// Draft-4 style: {"replace": "/name", "value": ...}
		found := 0
		for _, name := range patchOps {
			if p, ok := obj[name]; ok {
				op.Op, path = name, p
				found++
			}
		}
		if found != 1 {
			return op, Errorf(ErrInvalid, "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".")
		}
		op.Legacy = true
	} else {
		o, ok := obj["op"]
		if !ok {
			return op, Errorf(ErrInvalid, "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.")
		}
		name, _ := o.(string)
		if !slices.Contains(patchOps, name) {
			return op, Errorf(ErrInvalid, "Invalid operation: `%v`. It must be one of the following: add, remove, replace.", o)
		}
		op.Op = name
		if path, ok = obj["path"]; !ok {
			return op, Errorf(ErrInvalid, "Unable to find `path` in JSON Schema change. It must be one of the following: add, remove, replace.")
		}
	}
	pointer, ok := path.(string)
	if !ok {
		return op, Errorf(ErrInvalid, "Invalid JSON pointer for this resource: '%v'", path)
	}
	attr, err := decodePointer(pointer)
	if err != nil {
		return op, err
	}
	op.Attr = attr
	if op.Op != "remove" {
		v, ok := obj["value"]
		if !ok {
			return op, Errorf(ErrInvalid, "Operation \"%s\" requires a member named \"value\".", op.Op)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return op, Errorf(ErrInvalid, "Malformed JSON in request body.")
		}
		op.Value = b
	}
	return op, nil
}

// decodePointer checks a JSON pointer by Glance's rules and returns its
// single decoded segment.
func decodePointer(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", Errorf(ErrInvalid, "Pointer `%s` does not start with \"/\".", p)
	}
	if strings.Contains(p, "//") {
		return "", Errorf(ErrInvalid, "Pointer `%s` contains adjacent \"/\".", p)
	}
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		return "", Errorf(ErrInvalid, "Pointer `%s` end with \"/\".", p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 >= len(p) || (p[i+1] != '0' && p[i+1] != '1')) {
			return "", Errorf(ErrInvalid, "Pointer `%s` contains \"~\" not part of a recognized escape sequence.", p)
		}
	}
	segs := strings.Split(p[1:], "/")
	if len(segs) != 1 || segs[0] == "" {
		// Depth 2 is legal only under /locations, which Mosaic never
		// shows (Glance's show_multiple_locations=False); its checks
		// answer 403 below, so keep the pointer for them.
		if len(segs) == 2 && segs[0] == "locations" {
			return "locations", nil
		}
		return "", Errorf(ErrInvalid, "Invalid JSON pointer for this resource: '%s'", p)
	}
	return strings.NewReplacer("~1", "/", "~0", "~").Replace(segs[0]), nil
}

// checkPatchOp applies the per-change rules that do not depend on the
// image (Glance's _validate_change): read-only and reserved attributes.
func checkPatchOp(op PatchOp) error {
	k := op.Attr
	switch {
	case k == "id" || slices.Contains(readOnlyAttrs, k) || slices.Contains(responseOnlyAttrs, k):
		return forbiddenf("Attribute '%s' is read-only.", k)
	case k == "location" || k == "deleted" || k == "deleted_at" || strings.HasPrefix(k, reservedNamespace):
		return forbiddenf("Attribute '%s' is reserved.", k)
	case k == "locations":
		verb := map[string]string{"add": "add", "replace": "update", "remove": "remove"}[op.Op]
		return forbiddenf("It's not allowed to %s locations if locations are invisible.", verb)
	}
	return nil
}

// ApplyPatch applies ops to img in order with Glance's semantics and
// checks the result's limits. It is a pure function of its inputs apart
// from policy, which it asks of the context's caller; img is modified.
func ApplyPatch(ctx context.Context, img *Image, ops []PatchOp) error {
	for _, op := range ops {
		if err := checkPatchOp(op); err != nil {
			return err
		}
	}
	for _, op := range ops {
		if err := applyPatchOp(ctx, img, op); err != nil {
			return err
		}
	}
	return CheckImageLimits(img)
}

func applyPatchOp(ctx context.Context, img *Image, op PatchOp) error {
	k := op.Attr
	base := slices.Contains(baseAttrs, k)
	_, exists := img.Properties[k]
	switch op.Op {
	case "remove":
		if base {
			return forbiddenf("Access was denied to this resource. Property %s may not be removed.", k)
		}
		if !exists {
			return Errorf(ErrConflict, "There was a conflict when trying to complete your request. Property %s does not exist.", k)
		}
		delete(img.Properties, k)
		return nil
	case "replace":
		if !base && !exists {
			return Errorf(ErrConflict, "There was a conflict when trying to complete your request. Property %s does not exist.", k)
		}
	case "add":
		if op.Legacy && (exists || (base && k != "tags")) {
			return Errorf(ErrConflict, "There was a conflict when trying to complete your request. Property %s already present.", k)
		}
	}
	switch k {
	case "disk_format", "container_format":
		if img.Status != StatusQueued && img.Status != StatusImporting {
			return forbiddenf("Attribute %s can be only replaced for a queued image.", k)
		}
	case "owner":
		// "add" on a base attribute replaces it too.
		if c := CallerFrom(ctx); c != nil && !c.Admin() {
			return forbiddenf("Attribute 'owner' can only be changed by an administrator.")
		}
	}
	if err := setAttribute(img, k, op.Value); err != nil {
		return err
	}
	if k == "visibility" {
		switch img.Visibility {
		case VisibilityPublic:
			return Authorize(ctx, ActionPublicizeImage, Target{Image: img})
		case VisibilityCommunity:
			return Authorize(ctx, ActionCommunitizeImage, Target{Image: img})
		}
	}
	return nil
}

// PatchImage applies a parsed JSON-patch to an image as one atomic change
// on behalf of the caller and returns the stored result.
func (s *Service) PatchImage(ctx context.Context, id string, ops []PatchOp) (*Image, error) {
	for _, op := range ops {
		if err := checkPatchOp(op); err != nil {
			return nil, err
		}
	}
	if _, err := s.imageFor(ctx, id, ActionModifyImage); err != nil {
		return nil, err
	}
	return s.Update(ctx, id, func(img *Image) error {
		if img.Status == StatusDeleted || img.Status == StatusPendingDelete {
			return Errorf(ErrNotFound, "No image found with ID %s", id)
		}
		return ApplyPatch(ctx, img, ops)
	})
}

// String renders an op for logs and test failures.
func (op PatchOp) String() string { return fmt.Sprintf("%s /%s %s", op.Op, op.Attr, op.Value) }
