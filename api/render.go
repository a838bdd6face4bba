package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// glanceTime formats a timestamp as Glance does: second precision, "Z".
func glanceTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// imageJSON renders an image as Glance's image document: every base
// attribute (null when unset) plus each extra property.
func imageJSON(img *engine.Image) map[string]any {
	m := make(map[string]any, 24+len(img.Properties))
	for k, v := range img.Properties {
		m[k] = v
	}
	nullable := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	m["id"] = img.ID
	if img.Name != nil {
		m["name"] = *img.Name
	} else {
		m["name"] = nil
	}
	m["status"] = string(img.Status)
	m["visibility"] = img.Visibility
	m["protected"] = img.Protected
	m["os_hidden"] = img.OSHidden
	m["owner"] = nullable(img.Owner)
	m["disk_format"] = nullable(img.DiskFormat)
	m["container_format"] = nullable(img.ContainerFormat)
	m["min_disk"] = img.MinDisk
	m["min_ram"] = img.MinRAM
	if img.Size != nil {
		m["size"] = *img.Size
	} else {
		m["size"] = nil
	}
	if img.VirtualSize != nil {
		m["virtual_size"] = *img.VirtualSize
	} else {
		m["virtual_size"] = nil
	}
	m["checksum"] = nullable(img.Checksum)
	m["os_hash_algo"] = nullable(img.OSHashAlgo)
	m["os_hash_value"] = nullable(img.OSHashValue)
	tags := img.Tags
	if tags == nil {
		tags = []string{}
	}
	m["tags"] = tags
	m["created_at"] = glanceTime(img.CreatedAt)
	m["updated_at"] = glanceTime(img.UpdatedAt)
	m["self"] = "/v2/images/" + img.ID
	m["file"] = "/v2/images/" + img.ID + "/file"
	m["schema"] = "/v2/schemas/image"
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
