package engine

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// FuzzParsePatch: any body either fails to parse with a client error, or
// yields ops that ApplyPatch can apply to an image without panicking, and
// a successful patch leaves an image within Glance's limits. The corpus
// is in testdata/fuzz/FuzzParsePatch.
func FuzzParsePatch(f *testing.F) {
	f.Add(PatchMediaType, []byte(`[{"op":"replace","path":"/name","value":"x"}]`))
	f.Add(PatchMediaTypeV0, []byte(`[{"replace":"/name","value":"x"}]`))
	f.Fuzz(func(t *testing.T, mediaType string, body []byte) {
		ops, err := ParsePatch(mediaType, body)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("parse error of an unexpected kind: %v", err)
			}
			return
		}
		for _, op := range ops {
			if !slices.Contains(patchOps, op.Op) {
				t.Fatalf("parsed unknown op %q", op.Op)
			}
		}
		img := testImage()
		ctx := WithCaller(context.Background(), NoAuthCaller())
		if err := ApplyPatch(ctx, img, ops); err != nil {
			if _, ok := UserMessage(err); !ok {
				t.Fatalf("apply error without a user message: %v", err)
			}
			return
		}
		if err := CheckImageLimits(img); err != nil {
			t.Fatalf("patched image breaks limits: %v", err)
		}
		if img.Name != nil && len([]rune(*img.Name)) > MaxNameLen {
			t.Fatalf("name of %d characters accepted", len([]rune(*img.Name)))
		}
	})
}

// FuzzParseListQuery: any query string either fails with a client error or
// yields a query with a bounded limit and the tie-breaking sort keys, whose
// filters run on an image without panicking. The corpus is in
// testdata/fuzz/FuzzParseListQuery.
func FuzzParseListQuery(f *testing.F) {
	f.Add("limit=2&sort=name:asc,size:desc&tag=a&tag=b&created_at=gt:2000-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := ParseListQuery(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error of an unexpected kind: %v", err)
			}
			return
		}
		if q.Limit < 0 || q.Limit > MaxListLimit {
			t.Fatalf("limit %d", q.Limit)
		}
		n := len(q.Sort)
		if n < 2 || !slices.ContainsFunc(q.Sort, func(k SortKey) bool { return k.Key == "id" }) ||
			!slices.ContainsFunc(q.Sort, func(k SortKey) bool { return k.Key == "created_at" }) {
			t.Fatalf("sort %v lacks the tie-breakers", q.Sort)
		}
		for _, k := range q.Sort {
			if !slices.Contains(SortKeys, k.Key) {
				t.Fatalf("sort key %q", k.Key)
			}
		}
		img := testImage()
		for _, f := range q.filters {
			f(img)
		}
		_ = compareImages(q.Sort, img, testImage())
	})
}
