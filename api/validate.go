package api

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// Glance's image schema and request rules (glance/api/v2/images.py).
var (
	uuidPattern      = regexp.MustCompile(`^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$`)
	diskFormats      = []string{"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
	containerFormats = []string{"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}
	visibilities     = []string{"community", "public", "private", "shared"}
	// readOnlyOnCreate are base attributes a client may not set.
	readOnlyOnCreate = []string{"created_at", "updated_at", "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size"}
	// disallowed are response-only keys (403 "is read-only").
	disallowed = []string{"direct_url", "self", "file", "schema", "stores"}
	// reservedProps may not be extra properties.
	reservedProps = []string{"owner", "location", "locations", "deleted", "deleted_at", "direct_url", "self", "file", "schema"}
)

const (
	maxProperties = 128
	maxTags       = 128
	maxNameLen    = 255
)

func schemaError(format string, args ...any) error {
	return engine.Errorf(engine.ErrInvalid, "Provided object does not match schema 'image': "+format, args...)
}

func forbidden(format string, args ...any) error {
	return engine.Errorf(engine.ErrForbidden, format, args...)
}

// imageFromCreate validates a POST /v2/images body and returns the image to create.
func imageFromCreate(body map[string]json.RawMessage) (*engine.Image, error) {
	img := &engine.Image{Properties: map[string]string{}}
	for k, raw := range body {
		if slices.Contains(disallowed, k) {
			return nil, forbidden("Attribute '%s' is read-only.", k)
		}
		if slices.Contains(readOnlyOnCreate, k) {
			return nil, forbidden("Attribute '%s' is read-only.", k)
		}
		if err := setAttribute(img, k, raw, true); err != nil {
			return nil, err
		}
	}
	if err := checkLimits(img); err != nil {
		return nil, err
	}
	return img, nil
}

func checkLimits(img *engine.Image) error {
	n := 0
	for k := range img.Properties {
		if !strings.HasPrefix(k, "os_glance") {
			n++
		}
	}
	if n > maxProperties {
		return engine.Errorf(engine.ErrTooLarge, "Maximum number of properties exceeded: %d > %d", n, maxProperties)
	}
	if len(img.Tags) > maxTags {
		return engine.Errorf(engine.ErrTooLarge, "Maximum number of tags exceeded: %d > %d", len(img.Tags), maxTags)
	}
	return nil
}

// setAttribute sets one attribute (base or extra property) from JSON.
func setAttribute(img *engine.Image, k string, raw json.RawMessage, create bool) error {
	isNull := string(raw) == "null"
	str := func(maxLen int, nullOK bool) (*string, error) {
		if isNull {
			if nullOK {
				return nil, nil
			}
			return nil, schemaError("None is not of type 'string'")
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, schemaError("%s is not of type 'string'", raw)
		}
		if maxLen > 0 && len([]rune(s)) > maxLen {
			return nil, schemaError("'%s' is too long", s)
		}
		return &s, nil
	}
	enum := func(values []string) (string, error) {
		s, err := str(0, true)
		if err != nil {
			return "", err
		}
		if s == nil {
			return "", nil
		}
		if !slices.Contains(values, *s) {
			return "", schemaError("'%s' is not one of %v", *s, values)
		}
		return *s, nil
	}
	switch k {
	case "id":
		s, err := str(0, false)
		if err != nil {
			return err
		}
		if !uuidPattern.MatchString(*s) {
			return schemaError("'%s' does not match '%s'", *s, uuidPattern)
		}
		img.ID = strings.ToLower(*s)
	case "name":
		s, err := str(maxNameLen, true)
		if err != nil {
			return err
		}
		img.Name = s
	case "visibility":
		v, err := enum(visibilities)
		if err != nil {
			return err
		}
		if v == "" {
			return schemaError("None is not of type 'string'")
		}
		img.Visibility = v
	case "protected", "os_hidden":
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil || isNull {
			return schemaError("%s is not of type 'boolean'", raw)
		}
		if k == "protected" {
			img.Protected = b
		} else {
			img.OSHidden = b
		}
	case "owner":
		s, err := str(255, true)
		if err != nil {
			return err
		}
		img.Owner = ""
		if s != nil {
			img.Owner = *s
		}
	case "disk_format":
		v, err := enum(diskFormats)
		if err != nil {
			return err
		}
		img.DiskFormat = v
	case "container_format":
		v, err := enum(containerFormats)
		if err != nil {
			return err
		}
		img.ContainerFormat = v
	case "min_disk", "min_ram":
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil || isNull {
			return schemaError("%s is not of type 'integer'", raw)
		}
		v, err := n.Int64()
		if err != nil {
			return schemaError("%s is not of type 'integer'", raw)
		}
		if v < 0 {
			return schemaError("%d is less than the minimum of 0", v)
		}
		if k == "min_disk" {
			img.MinDisk = v
		} else {
			img.MinRAM = v
		}
	case "tags":
		var tags []string
		if err := json.Unmarshal(raw, &tags); err != nil || isNull {
			return schemaError("%s is not of type 'array' of strings", raw)
		}
		uniq := make([]string, 0, len(tags))
		for _, t := range tags {
			if len([]rune(t)) > 255 {
				return schemaError("'%s' is too long", t)
			}
			if !slices.Contains(uniq, t) {
				uniq = append(uniq, t)
			}
		}
		img.Tags = uniq
	default:
		if slices.Contains(reservedProps, k) || strings.HasPrefix(k, "os_glance") {
			if k == "locations" || k == "location" {
				return forbidden("Attribute '%s' is reserved.", k)
			}
			return forbidden("Access was denied to this resource. Attribute '%s' is reserved.", k)
		}
		if len([]rune(k)) > 255 {
			return engine.Errorf(engine.ErrInvalid, "Custom property should not be greater than 255 characters.")
		}
		s, err := str(0, false)
		if err != nil {
			return schemaError("%s is not of type 'string'", raw)
		}
		img.Properties[k] = *s
	}
	return nil
}

func badJSON() error {
	return newHTTPError(400, "Malformed JSON in request body.")
}
