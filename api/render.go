package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mosaicimg/mosaic/engine"
)

// glanceTime formats a timestamp as Glance does: second precision, "Z".
func glanceTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// hiddenProps are extra properties Glance never shows.
var hiddenProps = []string{"os_glance_stage_host"}

// appendImage appends an image as Glance's image document: extra
// properties, then every base attribute (null when unset), in Glance's
// order. It writes the JSON by hand: lists render many images, and this is
// several times faster than encoding a map.
func appendImage(b []byte, img *engine.Image) []byte {
	b = append(b, '{')
	keys := make([]string, 0, len(img.Properties))
	for k := range img.Properties {
		if !slices.Contains(hiddenProps, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendJSONString(b, k)
		b = append(b, ": "...)
		b = appendJSONString(b, img.Properties[k])
		b = append(b, ", "...)
	}
	field := func(name string) {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `": `...)
	}
	str := func(name, v string, null bool) {
		field(name)
		if null {
			b = append(b, "null"...)
		} else {
			b = appendJSONString(b, v)
		}
		b = append(b, ", "...)
	}
	num := func(name string, v *int64) {
		field(name)
		if v == nil {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendInt(b, *v, 10)
		}
		b = append(b, ", "...)
	}
	boolean := func(name string, v bool) {
		field(name)
		b = strconv.AppendBool(b, v)
		b = append(b, ", "...)
	}
	name := ""
	if img.Name != nil {
		name = *img.Name
	}
	str("name", name, img.Name == nil)
	str("disk_format", img.DiskFormat, img.DiskFormat == "")
	str("container_format", img.ContainerFormat, img.ContainerFormat == "")
	str("visibility", img.Visibility, false)
	num("size", img.Size)
	num("virtual_size", img.VirtualSize)
	str("status", string(img.Status), false)
	str("checksum", img.Checksum, img.Checksum == "")
	boolean("protected", img.Protected)
	num("min_ram", &img.MinRAM)
	num("min_disk", &img.MinDisk)
	str("owner", img.Owner, img.Owner == "")
	boolean("os_hidden", img.OSHidden)
	str("os_hash_algo", img.OSHashAlgo, img.OSHashAlgo == "")
	str("os_hash_value", img.OSHashValue, img.OSHashValue == "")
	str("id", img.ID, false)
	str("created_at", glanceTime(img.CreatedAt), false)
	str("updated_at", glanceTime(img.UpdatedAt), false)
	field("tags")
	b = append(b, '[')
	for i, t := range img.Tags {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendJSONString(b, t)
	}
	b = append(b, "], "...)
	str("self", "/v2/images/"+img.ID, false)
	str("file", "/v2/images/"+img.ID+"/file", false)
	field("schema")
	b = append(b, `"/v2/schemas/image"}`...)
	return b
}

// appendImageList appends a list page: {"images": [...], "first", "schema", "next"}.
func appendImageList(b []byte, imgs []*engine.Image, first, next string) []byte {
	b = append(b, `{"images": [`...)
	for i, img := range imgs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendImage(b, img)
	}
	b = append(b, `], "first": `...)
	b = appendJSONString(b, first)
	b = append(b, `, "schema": "/v2/schemas/images"`...)
	if next != "" {
		b = append(b, `, "next": `...)
		b = appendJSONString(b, next)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func writeImage(w http.ResponseWriter, status int, img *engine.Image) {
	writeRaw(w, status, appendImage(make([]byte, 0, 1024), img))
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, b)
}
