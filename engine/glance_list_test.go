package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseListQueryErrors(t *testing.T) {
	for _, tc := range []struct{ q, msg string }{
		{"limit=-1", "limit param must be positive"},
		{"limit=abc", "limit param must be an integer"},
		{"sort_key=bogus", "Invalid sort key: bogus"},
		{"sort_dir=up", "Invalid sort direction: up"},
		{"sort=name:sideways", "Invalid sort direction: sideways"},
		{"sort=bogus:asc", "Invalid sort key: bogus"},
		{"sort=name:asc&sort_key=size", "Old and new sorting syntax cannot be combined"},
		{"sort_key=name&sort_dir=asc&sort_dir=desc", "Number of sort dirs does not match"},
		{"visibility=bogus", "Invalid visibility value: bogus"},
		{"member_status=bogus", "Invalid status: bogus"},
		{"os_hidden=maybe", "Invalid value 'maybe' for 'os_hidden' filter"},
		{"protected=maybe", "Invalid value 'maybe' for 'protected' filter"},
		{"size_min=abc", "non-numeric value"},
		{"created_at=xx:2000-01-01T00:00:00Z", "unknown operator"},
		{"created_at=gt:yesterday", `Bad "created_at" query filter format`},
		{"name=neq:a", "Unable to filter by unknown operator 'neq'"},
		{`name=in:"a,b`, "quote is not closed"},
		{"changes-since=2000-01-01", "no longer available"},
		{"limit=%zz", "Invalid query string"},
	} {
		_, err := ParseListQuery(tc.q)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseListQuery(%q) = %v, want one containing %q", tc.q, err, tc.msg)
		}
	}
}

func TestParseListQuerySortAndParams(t *testing.T) {
	q, err := ParseListQuery("sort_key=name&sort_key=size&sort_dir=asc&marker=m&limit=100000&foo=b%20r")
	if err != nil {
		t.Fatal(err)
	}
	want := []SortKey{{"name", false}, {"size", false}, {"created_at", false}, {"id", false}}
	if !slices.Equal(q.Sort, want) || q.Limit != MaxListLimit || q.Marker != "m" {
		t.Fatalf("query %+v", q)
	}
	if len(q.Params) != 5 || q.Params[4] != [2]string{"foo", "b r"} {
		t.Fatalf("params %v", q.Params)
	}
	q, _ = ParseListQuery("sort=name:asc,size")
	want = []SortKey{{"name", false}, {"size", true}, {"created_at", true}, {"id", true}}
	if !slices.Equal(q.Sort, want) {
		t.Fatalf("new-style sort %v", q.Sort)
	}
	q, _ = ParseListQuery("")
	if !slices.Equal(q.Sort, []SortKey{{"created_at", true}, {"id", true}}) || q.Limit != DefaultListLimit {
		t.Fatalf("defaults %+v", q)
	}
}

func TestListFilters(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(name string, status Status, size int64, tags ...string) *Image {
		n := name
		return &Image{ID: name, Name: &n, Status: status, Size: &size, Tags: tags, DiskFormat: "raw",
			Properties: map[string]string{"os_distro": name}, CreatedAt: t0.Add(time.Duration(size) * time.Hour)}
	}
	imgs := []*Image{mk("a", StatusActive, 1, "x"), mk("b,c", StatusQueued, 2, "x", "y"), mk("d", StatusActive, 3, "y")}
	match := func(query string) []string {
		q, err := ParseListQuery(query)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		var out []string
		for _, img := range imgs {
			ok := true
			for _, f := range q.filters {
				ok = ok && f(img)
			}
			if ok {
				out = append(out, img.ID)
			}
		}
		return out
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"name=a", []string{"a"}},
		{`name=in:"b,c",d`, []string{"b,c", "d"}},
		{"status=in:queued", []string{"b,c"}},
		{"status=bogus", nil},
		{"tag=x&tag=y", []string{"b,c"}},
		{"size_min=2&size_max=3", []string{"b,c", "d"}},
		{"created_at=gt:2026-01-01T01:00:00Z", []string{"b,c", "d"}},
		{"created_at=lte:2026-01-01T02:00:00", []string{"a", "b,c"}},
		{"created_at=2026-01-01T03:00:00Z", []string{"d"}},
		{"os_distro=d", []string{"d"}},
		{"size=gt:1", nil}, // only time fields take operators; this compares the literal
		{"disk_format=in:raw,qcow2", []string{"a", "b,c", "d"}},
		{"page=2", nil}, // an unknown key is a property filter
	} {
		if got := match(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.q, got, tc.want)
		}
	}
}

// TestTopKMatchesSort checks the bounded heap against a full sort.
func TestTopKMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := []SortKey{{"name", false}, {"size", true}, {"created_at", true}, {"id", true}}
	for round := range 50 {
		var imgs []*Image
		for i := range 200 {
			var name *string
			if r.IntN(5) > 0 {
				n := fmt.Sprintf("n%d", r.IntN(20))
				name = &n
			}
			var size *int64
			if r.IntN(4) > 0 {
				s := int64(r.IntN(10))
				size = &s
			}
			imgs = append(imgs, &Image{ID: fmt.Sprintf("%04d-%d", i, round), Name: name, Size: size,
				CreatedAt: time.Unix(int64(r.IntN(30)), 0)})
		}
		k := 1 + r.IntN(40)
		top := newTopK(k, func(a, b *Image) int { return compareImages(keys, a, b) })
		for _, img := range imgs {
			top.add(img)
		}
		sorted := slices.Clone(imgs)
		slices.SortFunc(sorted, func(a, b *Image) int { return compareImages(keys, a, b) })
		if got := top.sorted(); !slices.Equal(got, sorted[:k]) {
			t.Fatalf("round %d: top %d differs from the sorted prefix", round, k)
		}
	}
}
