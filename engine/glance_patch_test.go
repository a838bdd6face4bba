package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func testImage() *Image {
	name := "img"
	size := int64(10)
	return &Image{ID: "0b7d1b0c-3c8e-4a0e-9a55-6f7f4c1d2e3f", Name: &name, Status: StatusActive,
		Visibility: VisibilityShared, DiskFormat: "raw", ContainerFormat: "bare", Size: &size,
		Tags: []string{"a"}, Properties: map[string]string{"foo": "bar"}, CreatedAt: time.Unix(0, 0)}
}

func TestParsePatchErrors(t *testing.T) {
	for _, tc := range []struct {
		mediaType, body string
		kind            error
		msg             string
	}{
		{"application/json", `[]`, ErrUnsupported, "media type application/json"},
		{"", `[]`, ErrUnsupported, "media type text/plain"},
		{PatchMediaType, ``, ErrInvalid, "Body expected"},
		{PatchMediaType, `[{"op":"replace",`, ErrInvalid, "Malformed JSON"},
		{PatchMediaType, `[] []`, ErrInvalid, "Malformed JSON"},
		{PatchMediaType, `{"op":"replace"}`, ErrInvalid, "JSON array of operation objects"},
		{PatchMediaType, `[1]`, ErrInvalid, "Operations must be JSON objects"},
		{PatchMediaType, `[{"path":"/x","value":"c"}]`, ErrInvalid, "Unable to find `op`"},
		{PatchMediaType, `[{"op":"move","from":"/a","path":"/b"}]`, ErrInvalid, "Invalid operation: `move`"},
		{PatchMediaType, `[{"op":"test","path":"/b","value":1}]`, ErrInvalid, "Invalid operation: `test`"},
		{PatchMediaType, `[{"op":"add","value":1}]`, ErrInvalid, "Unable to find `path`"},
		{PatchMediaType, `[{"op":"add","path":"x","value":"c"}]`, ErrInvalid, "does not start with"},
		{PatchMediaType, `[{"op":"add","path":"/x/","value":"c"}]`, ErrInvalid, `end with "/"`},
		{PatchMediaType, `[{"op":"add","path":"//x","value":"c"}]`, ErrInvalid, "adjacent"},
		{PatchMediaType, `[{"op":"add","path":"/x~2","value":"c"}]`, ErrInvalid, "recognized escape"},
		{PatchMediaType, `[{"op":"add","path":"/x/y","value":"c"}]`, ErrInvalid, "Invalid JSON pointer"},
		{PatchMediaType, `[{"op":"add","path":"/tags/-","value":"c"}]`, ErrInvalid, "Invalid JSON pointer"},
		{PatchMediaType, `[{"op":"add","path":"/","value":"c"}]`, ErrInvalid, "Invalid JSON pointer"},
		{PatchMediaType, `[{"op":"add","path":"/x"}]`, ErrInvalid, `requires a member named "value"`},
		{PatchMediaTypeV0, `[{"op":"add","path":"/x","value":1}]`, ErrInvalid, "exactly one member"},
	} {
		_, err := ParsePatch(tc.mediaType, []byte(tc.body))
		if !errors.Is(err, tc.kind) || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParsePatch(%q, %s) = %v, want %v containing %q", tc.mediaType, tc.body, err, tc.kind, tc.msg)
		}
	}
}

func TestParsePatchDecodesPointers(t *testing.T) {
	ops, err := ParsePatch(PatchMediaType, []byte(`[{"op":"add","path":"/a~1b~0c","value":"v"},{"op":"remove","path":"/x"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 2 || ops[0].Attr != "a/b~c" || string(ops[0].Value) != `"v"` || ops[1].Op != "remove" || ops[1].Attr != "x" {
		t.Fatalf("ops %v", ops)
	}
	ops, err = ParsePatch(PatchMediaTypeV0, []byte(`[{"replace":"/name","value":"n"}]`))
	if err != nil || len(ops) != 1 || ops[0].Op != "replace" || !ops[0].Legacy {
		t.Fatalf("v2.0 ops %v, %v", ops, err)
	}
}

func patch(t *testing.T, img *Image, body string) error {
	t.Helper()
	ops, err := ParsePatch(PatchMediaType, []byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	return ApplyPatch(WithCaller(context.Background(), NoAuthCaller()), img, ops)
}

func TestApplyPatchGlanceRules(t *testing.T) {
	for _, tc := range []struct {
		body string
		kind error
		msg  string
	}{
		{`[{"op":"replace","path":"/status","value":"queued"}]`, ErrForbidden, "Attribute 'status' is read-only."},
		{`[{"op":"replace","path":"/id","value":"x"}]`, ErrForbidden, "Attribute 'id' is read-only."},
		{`[{"op":"replace","path":"/size","value":1}]`, ErrForbidden, "Attribute 'size' is read-only."},
		{`[{"op":"remove","path":"/self"}]`, ErrForbidden, "Attribute 'self' is read-only."},
		{`[{"op":"add","path":"/os_glance_foo","value":"1"}]`, ErrForbidden, "Attribute 'os_glance_foo' is reserved."},
		{`[{"op":"replace","path":"/locations","value":[]}]`, ErrForbidden, "locations"},
		{`[{"op":"replace","path":"/nosuch","value":"x"}]`, ErrConflict, "Property nosuch does not exist."},
		{`[{"op":"remove","path":"/nosuch"}]`, ErrConflict, "Property nosuch does not exist."},
		{`[{"op":"remove","path":"/disk_format"}]`, ErrForbidden, "Property disk_format may not be removed."},
		{`[{"op":"remove","path":"/tags"}]`, ErrForbidden, "Property tags may not be removed."},
		{`[{"op":"replace","path":"/disk_format","value":"qcow2"}]`, ErrForbidden, "can be only replaced for a queued image"},
		{`[{"op":"replace","path":"/name","value":"` + strings.Repeat("n", 256) + `"}]`, ErrInvalid, "too long"},
		{`[{"op":"replace","path":"/protected","value":"yes"}]`, ErrInvalid, "is not of type 'boolean'"},
		{`[{"op":"replace","path":"/min_ram","value":-3}]`, ErrInvalid, "Cannot be a negative value"},
		{`[{"op":"replace","path":"/min_ram","value":"3"}]`, ErrInvalid, "is not of type 'integer'"},
		{`[{"op":"add","path":"/foo","value":null}]`, ErrInvalid, "is not of type 'string'"},
		{`[{"op":"replace","path":"/container_format","value":"zip"}]`, ErrForbidden, "queued"},
		{`[{"op":"replace","path":"/visibility","value":"public"}]`, ErrForbidden, "publicize_image"},
		{`[{"op":"replace","path":"/visibility","value":"everyone"}]`, ErrInvalid, "is not one of"},
		{`[{"op":"replace","path":"/tags","value":` + jsonList(129) + `}]`, ErrTooLarge, "Attempted: 129, Maximum: 128"},
		{`[{"op":"replace","path":"/tags","value":["` + strings.Repeat("t", 256) + `"]}]`, ErrInvalid, "too long"},
	} {
		err := patch(t, testImage(), tc.body)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v containing %q", tc.body, err, tc.kind, tc.msg)
		}
	}
}

func jsonList(n int) string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%d", i)
	}
	b, _ := json.Marshal(tags)
	return string(b)
}

func TestApplyPatchSemantics(t *testing.T) {
	img := testImage()
	img.Status = StatusQueued
	body := `[
		{"op":"replace","path":"/name","value":"renamed"},
		{"op":"add","path":"/foo","value":"baz"},
		{"op":"add","path":"/new","value":"1"},
		{"op":"remove","path":"/new"},
		{"op":"add","path":"/a~1b","value":"slash"},
		{"op":"replace","path":"/tags","value":["x","x","y"]},
		{"op":"replace","path":"/disk_format","value":"qcow2"},
		{"op":"add","path":"/min_disk","value":5},
		{"op":"replace","path":"/os_hidden","value":true},
		{"op":"replace","path":"/visibility","value":"community"}
	]`
	if err := patch(t, img, body); err != nil {
		t.Fatal(err)
	}
	if *img.Name != "renamed" || img.Properties["foo"] != "baz" || img.Properties["a/b"] != "slash" ||
		len(img.Tags) != 2 || img.DiskFormat != "qcow2" || img.MinDisk != 5 || !img.OSHidden ||
		img.Visibility != VisibilityCommunity {
		t.Fatalf("after patch: %+v", img)
	}
	if _, ok := img.Properties["new"]; ok {
		t.Fatal("removed property still present")
	}
	// v2.0: add of an existing property is a conflict.
	ops, _ := ParsePatch(PatchMediaTypeV0, []byte(`[{"add":"/foo","value":"x"}]`))
	if err := ApplyPatch(context.Background(), img, ops); !errors.Is(err, ErrConflict) {
		t.Fatalf("v2.0 add existing: %v", err)
	}
	// 128 extra properties are fine, 129 are not (os_glance* excluded).
	img = testImage()
	img.Properties = map[string]string{"os_glance_import_task": "t"}
	var b strings.Builder
	b.WriteString("[")
	for i := range 128 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"op":"add","path":"/p%d","value":"v"}`, i)
	}
	if err := patch(t, img, b.String()+"]"); err != nil {
		t.Fatalf("128 properties: %v", err)
	}
	if err := patch(t, img, `[{"op":"add","path":"/one-more","value":"v"}]`); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("129th property: %v", err)
	}
}

func TestImageFromCreate(t *testing.T) {
	for _, tc := range []struct {
		body string
		kind error
	}{
		{`{"status":"active"}`, ErrForbidden},
		{`{"checksum":"x"}`, ErrForbidden},
		{`{"self":"x"}`, ErrForbidden},
		{`{"locations":[]}`, ErrForbidden},
		{`{"os_glance_x":"1"}`, ErrForbidden},
		{`{"deleted":"1"}`, ErrForbidden},
		{`{"id":"not-a-uuid"}`, ErrInvalid},
		{`{"disk_format":"floppy"}`, ErrInvalid},
		{`{"min_disk":"10"}`, ErrInvalid},
		{`{"min_ram":1.5}`, ErrInvalid},
		{`{"foo":1}`, ErrInvalid},
		{`{"` + strings.Repeat("k", 256) + `":"v"}`, ErrInvalid},
		{`{"tags":` + jsonList(129) + `}`, ErrTooLarge},
	} {
		var body map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.body), &body); err != nil {
			t.Fatal(err)
		}
		if _, err := ImageFromCreate(body); !errors.Is(err, tc.kind) {
			t.Errorf("create %.60s: %v, want %v", tc.body, err, tc.kind)
		}
	}
	var body map[string]json.RawMessage
	_ = json.Unmarshal([]byte(`{"id":"0B7D1B0C-3C8E-4A0E-9A55-6F7F4C1D2E3F","name":null,"tags":["a","a","b"],"protected":true,"x":""}`), &body)
	img, err := ImageFromCreate(body)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != "0b7d1b0c-3c8e-4a0e-9a55-6f7f4c1d2e3f" || img.Name != nil || len(img.Tags) != 2 || !img.Protected || img.Properties["x"] != "" {
		t.Fatalf("created %+v", img)
	}
}
