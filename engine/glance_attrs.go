package engine

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Glance's image schema and attribute rules (glance/api/v2/images.py,
// glance/domain/__init__.py), applied on create and on JSON-patch.
var (
	uuidPattern = regexp.MustCompile(`^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$`)
	// DiskFormats and ContainerFormats are Glance's default
	// [image_format] lists, in its order.
	DiskFormats      = []string{"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
	ContainerFormats = []string{"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}
	visibilities     = []string{VisibilityCommunity, VisibilityPublic, VisibilityPrivate, VisibilityShared}
	// readOnlyAttrs are base attributes only the server sets.
	readOnlyAttrs = []string{"created_at", "updated_at", "status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size"}
	// responseOnlyAttrs are keys of the image document clients never send.
	responseOnlyAttrs = []string{"direct_url", "self", "file", "schema", "stores"}
	// reservedProps may not be extra properties.
	reservedProps = []string{"owner", "location", "locations", "deleted", "deleted_at", "direct_url", "self", "file", "schema"}
	// baseAttrs are the attributes of the image schema (not extra properties).
	baseAttrs = []string{"id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
		"os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "container_format", "disk_format",
		"created_at", "updated_at", "tags", "direct_url", "min_ram", "min_disk", "self", "file", "schema",
		"locations", "stores"}
)

// Glance's default limits (glance/common/config.py).
const (
	MaxImageProperties = 128
	MaxImageTags       = 128
	MaxImageMembers    = 128
	MaxNameLen         = 255
	// reservedNamespace prefixes properties only Glance itself writes.
	reservedNamespace = "os_glance"
)

// IsUUID reports whether s matches Glance's image ID pattern.
func IsUUID(s string) bool { return uuidPattern.MatchString(s) }

func schemaError(format string, args ...any) error {
	return Errorf(ErrInvalid, "Provided object does not match schema 'image': "+format, args...)
}

func forbiddenf(format string, args ...any) error { return Errorf(ErrForbidden, format, args...) }

// ImageFromCreate validates a POST /v2/images body (the decoded top-level
// object) and returns the image to create. Nothing is stored.
func ImageFromCreate(body map[string]json.RawMessage) (*Image, error) {
	img := &Image{Properties: map[string]string{}}
	// Deterministic order, so the same bad body always gives the same error.
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if slices.Contains(responseOnlyAttrs, k) || slices.Contains(readOnlyAttrs, k) {
			return nil, forbiddenf("Attribute '%s' is read-only.", k)
		}
	}
	for _, k := range keys {
		if err := setAttribute(img, k, body[k]); err != nil {
			return nil, err
		}
	}
	if err := CheckImageLimits(img); err != nil {
		return nil, err
	}
	return img, nil
}

// CheckImageLimits enforces Glance's property and tag quotas (413).
func CheckImageLimits(img *Image) error {
	n := 0
	for k := range img.Properties {
		if !strings.HasPrefix(k, reservedNamespace) {
			n++
		}
	}
	if n > MaxImageProperties {
		return Errorf(ErrTooLarge, "The limit has been exceeded on the number of allowed image properties. Attempted: %d, Maximum: %d", n, MaxImageProperties)
	}
	if len(img.Tags) > MaxImageTags {
		return Errorf(ErrTooLarge, "The limit has been exceeded on the number of allowed image tags. Attempted: %d, Maximum: %d", len(img.Tags), MaxImageTags)
	}
	return nil
}

// setAttribute sets one attribute (base or extra property) from JSON,
// validating it against the image schema.
func setAttribute(img *Image, k string, raw json.RawMessage) error {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
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
			return "", schemaError("'%s' is not one of %s", *s, pyList(values))
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
		s, err := str(MaxNameLen, true)
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
			return schemaError("None is not one of %s", pyList(visibilities))
		}
		img.Visibility = v
	case "protected", "os_hidden":
		var b bool
		if isNull || json.Unmarshal(raw, &b) != nil {
			return schemaError("%s is not of type 'boolean'", pyRepr(raw))
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
		v, err := enum(DiskFormats)
		if err != nil {
			return err
		}
		img.DiskFormat = v
	case "container_format":
		v, err := enum(ContainerFormats)
		if err != nil {
			return err
		}
		img.ContainerFormat = v
	case "min_disk", "min_ram":
		var n json.Number
		if isNull || len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
			return schemaError("%s is not of type 'integer'", pyRepr(raw))
		}
		v, err := n.Int64()
		if err != nil {
			return schemaError("%s is not of type 'integer'", raw)
		}
		if v < 0 {
			return Errorf(ErrInvalid, "Invalid value '%d' for parameter '%s': Cannot be a negative value", v, k)
		}
		if k == "min_disk" {
			img.MinDisk = v
		} else {
			img.MinRAM = v
		}
	case "tags":
		var tags []string
		if isNull || json.Unmarshal(raw, &tags) != nil {
			return schemaError("%s is not of type 'array'", pyRepr(raw))
		}
		uniq := make([]string, 0, len(tags))
		for _, t := range tags {
			if err := ValidateTag(t); err != nil {
				return err
			}
			if !slices.Contains(uniq, t) {
				uniq = append(uniq, t)
			}
		}
		img.Tags = uniq
	case "locations":
		return forbiddenf("Attribute '%s' is reserved.", k)
	default:
		if slices.Contains(reservedProps, k) || strings.HasPrefix(k, reservedNamespace) {
			if k == "location" {
				return forbiddenf("Attribute '%s' is reserved.", k)
			}
			return forbiddenf("Access was denied to this resource. Attribute '%s' is reserved.", k)
		}
		if slices.Contains(readOnlyAttrs, k) || slices.Contains(responseOnlyAttrs, k) {
			return forbiddenf("Attribute '%s' is read-only.", k)
		}
		if len([]rune(k)) > 255 {
			return Errorf(ErrInvalid, "Custom property should not be greater than 255 characters.")
		}
		s, err := str(0, false)
		if err != nil {
			return schemaError("%s is not of type 'string'", pyRepr(raw))
		}
		if img.Properties == nil {
			img.Properties = map[string]string{}
		}
		img.Properties[k] = *s
	}
	return nil
}

// ValidateTag checks one tag against the schema (at most 255 characters).
func ValidateTag(t string) error {
	if len([]rune(t)) > 255 {
		return schemaError("'%s' is too long", t)
	}
	return nil
}

// pyList renders values as Python prints a list, as Glance's schema errors do.
func pyList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "'" + v + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// pyRepr renders a JSON scalar roughly as Python's repr would.
func pyRepr(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return "'" + s + "'"
	}
	switch string(raw) {
	case "null":
		return "None"
	case "true":
		return "True"
	case "false":
		return "False"
	}
	return fmt.Sprint(string(raw))
}
