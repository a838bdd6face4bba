package engine

import (
	"cmp"
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// List defaults (Glance's limit_param_default and api_limit_max).
const (
	DefaultListLimit = 25
	MaxListLimit     = 1000
)

// SortKeys are the keys images can be sorted by.
var SortKeys = []string{"name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at"}

// SortKey is one key of a list's order.
type SortKey struct {
	Key  string
	Desc bool
}

// ListQuery is a parsed GET /v2/images query.
type ListQuery struct {
	Limit  int
	Marker string
	Sort   []SortKey
	// Visibility is "" (the caller's default view), "all" or a visibility.
	Visibility   string
	MemberStatus string
	// OSHidden selects hidden (true) or visible (false) images.
	OSHidden bool
	// Params are the query's parameters other than marker, in order, for
	// the first/next links.
	Params [][2]string

	filters []func(*Image) bool
}

// ListPage is one page of a list.
type ListPage struct {
	Images []*Image
	// Next is the marker of the next page; empty on the last page.
	Next string
}

// ParseListQuery parses and validates a raw GET /v2/images query string
// with Glance's rules (RequestDeserializer.index). It reads nothing.
func ParseListQuery(rawQuery string) (*ListQuery, error) {
	q := &ListQuery{Limit: DefaultListLimit, MemberStatus: MemberAccepted}
	var sortKeys, sortDirs []string
	var newSort string
	haveNewSort := false
	tags := []string{}
	for _, kv := range strings.Split(rawQuery, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		var err error
		if k, err = url.QueryUnescape(k); err != nil {
			return nil, Errorf(ErrInvalid, "Invalid query string.")
		}
		if v, err = url.QueryUnescape(v); err != nil {
			return nil, Errorf(ErrInvalid, "Invalid query string.")
		}
		if k != "marker" {
			q.Params = append(q.Params, [2]string{k, v})
		}
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, Errorf(ErrInvalid, "limit param must be an integer")
			}
			if n < 0 {
				return nil, Errorf(ErrInvalid, "limit param must be positive")
			}
			q.Limit = min(n, MaxListLimit)
		case "marker":
			q.Marker = v
		case "sort_key":
			sortKeys = append(sortKeys, v)
		case "sort_dir":
			sortDirs = append(sortDirs, v)
		case "sort":
			newSort, haveNewSort = v, true
		case "visibility":
			if !slices.Contains(append([]string{"all"}, visibilities...), v) {
				return nil, Errorf(ErrInvalid, "Invalid visibility value: %s", v)
			}
			q.Visibility = v
		case "member_status":
			if !slices.Contains([]string{MemberPending, MemberAccepted, MemberRejected, "all"}, v) {
				return nil, Errorf(ErrInvalid, "Invalid status: %s", v)
			}
			q.MemberStatus = v
		case "os_hidden", "protected":
			b, err := parseBoolFilter(k, v)
			if err != nil {
				return nil, err
			}
			if k == "os_hidden" {
				q.OSHidden = b
			} else {
				q.filters = append(q.filters, func(img *Image) bool { return img.Protected == b })
			}
		case "tag":
			tags = append(tags, v)
		case "changes-since":
			return nil, Errorf(ErrInvalid, `The "changes-since" filter is no longer available on v2.`)
		default:
			f, err := parseFilter(k, v)
			if err != nil {
				return nil, err
			}
			q.filters = append(q.filters, f)
		}
	}
	if len(tags) > 0 {
		q.filters = append(q.filters, func(img *Image) bool {
			for _, t := range tags {
				if !slices.Contains(img.Tags, t) {
					return false
				}
			}
			return true
		})
	}
	sort, err := parseSort(sortKeys, sortDirs, newSort, haveNewSort)
	if err != nil {
		return nil, err
	}
	q.Sort = sort
	return q, nil
}

func parseBoolFilter(k, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, Errorf(ErrInvalid, "Invalid value '%s' for '%s' filter. Valid values are 'true' or 'false'.", v, k)
}

// parseSort builds the order: the old syntax (sort_key/sort_dir, one dir
// for all keys or one per key) or the new one (sort=k:dir,...), then
// created_at and id as tie-breakers (Glance's image_get_all).
func parseSort(keys, dirs []string, newSort string, haveNew bool) ([]SortKey, error) {
	if haveNew && (len(keys) > 0 || len(dirs) > 0) {
		return nil, Errorf(ErrInvalid, "Old and new sorting syntax cannot be combined")
	}
	checkKey := func(k string) error {
		if !slices.Contains(SortKeys, k) {
			return Errorf(ErrInvalid, "Invalid sort key: %s. It must be one of the following: %s.", k, strings.Join(SortKeys, ", "))
		}
		return nil
	}
	checkDir := func(d string) (bool, error) {
		switch d {
		case "asc":
			return false, nil
		case "desc":
			return true, nil
		}
		return false, Errorf(ErrInvalid, "Invalid sort direction: %s", d)
	}
	var out []SortKey
	defaultDesc := true
	if haveNew {
		for _, part := range strings.Split(newSort, ",") {
			k, d, hasDir := strings.Cut(strings.TrimSpace(part), ":")
			if err := checkKey(k); err != nil {
				return nil, err
			}
			desc := true
			if hasDir {
				var err error
				if desc, err = checkDir(d); err != nil {
					return nil, err
				}
			}
			out = append(out, SortKey{Key: k, Desc: desc})
		}
	} else {
		for _, k := range keys {
			if err := checkKey(k); err != nil {
				return nil, err
			}
		}
		descs := make([]bool, 0, len(dirs))
		for _, d := range dirs {
			desc, err := checkDir(d)
			if err != nil {
				return nil, err
			}
			descs = append(descs, desc)
		}
		if len(keys) == 0 {
			keys = []string{"created_at"}
		}
		switch {
		case len(descs) == 0:
		case len(descs) == 1:
			defaultDesc = descs[0]
		case len(descs) != len(keys):
			return nil, Errorf(ErrInvalid, "Number of sort dirs does not match the number of sort keys")
		}
		for i, k := range keys {
			desc := defaultDesc
			if len(descs) > 1 {
				desc = descs[i]
			}
			out = append(out, SortKey{Key: k, Desc: desc})
		}
	}
	for _, k := range []string{"created_at", "id"} {
		if !slices.ContainsFunc(out, func(s SortKey) bool { return s.Key == k }) {
			out = append(out, SortKey{Key: k, Desc: defaultDesc})
		}
	}
	return out, nil
}

// inFields accept the in: operator.
var inFields = []string{"name", "id", "status", "container_format", "disk_format"}

// parseFilter compiles one equality, in:, time or range filter; any
// unknown key is an extra-property equality filter.
func parseFilter(k, v string) (func(*Image) bool, error) {
	switch k {
	case "created_at", "updated_at":
		return parseTimeFilter(k, v)
	case "size_min", "size_max", "virtual_size_min", "virtual_size_max", "min_ram_min", "min_ram_max", "min_disk_min", "min_disk_max":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, Errorf(ErrInvalid, "Unable to filter on a range with a non-numeric value.")
		}
		field := strings.TrimSuffix(strings.TrimSuffix(k, "_min"), "_max")
		isMin := strings.HasSuffix(k, "_min")
		return func(img *Image) bool {
			val, ok := intField(img, field)
			if !ok {
				return false
			}
			if isMin {
				return val >= n
			}
			return val <= n
		}, nil
	}
	if op, rest, ok := strings.Cut(v, ":"); ok && slices.Contains(inFields, k) {
		if op != "in" {
			if slices.Contains([]string{"eq", "neq", "gt", "gte", "lt", "lte"}, op) {
				return nil, Errorf(ErrInvalid, "Unable to filter by unknown operator '%s'.", op)
			}
		} else {
			values, err := splitInValues(rest)
			if err != nil {
				return nil, err
			}
			return func(img *Image) bool {
				s, _ := stringField(img, k)
				return slices.Contains(values, s)
			}, nil
		}
	}
	switch k {
	case "name", "id", "status", "container_format", "disk_format", "owner", "checksum", "os_hash_algo", "os_hash_value", "visibility":
		return func(img *Image) bool {
			s, ok := stringField(img, k)
			return ok && s == v
		}, nil
	case "size", "virtual_size", "min_ram", "min_disk":
		return func(img *Image) bool {
			n, ok := intField(img, k)
			return ok && strconv.FormatInt(n, 10) == v
		}, nil
	}
	return func(img *Image) bool {
		p, ok := img.Properties[k]
		return ok && p == v
	}, nil
}

// splitInValues splits an in: list; values containing commas are quoted.
func splitInValues(s string) ([]string, error) {
	var out []string
	for len(s) > 0 {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, Errorf(ErrInvalid, "Invalid filter value %s. The quote is not closed.", s)
			}
			out = append(out, s[1:1+end])
			s = s[end+2:]
			if len(s) > 0 {
				if s[0] != ',' {
					return nil, Errorf(ErrInvalid, "Invalid filter value %s. There is no comma after closing quotation mark.", s)
				}
				s = s[1:]
			}
			continue
		}
		v, rest, found := strings.Cut(s, ",")
		out = append(out, v)
		s = rest
		if found && s == "" {
			out = append(out, "")
		}
	}
	return out, nil
}

func parseTimeFilter(k, v string) (func(*Image) bool, error) {
	op, val := "eq", v
	if o, rest, ok := strings.Cut(v, ":"); ok && !strings.Contains(o, "-") && !strings.Contains(o, "T") {
		op, val = o, rest
	}
	if !slices.Contains([]string{"eq", "neq", "gt", "gte", "lt", "lte"}, op) {
		return nil, Errorf(ErrInvalid, "Unable to filter on a unknown operator.")
	}
	t, err := parseISOTime(val)
	if err != nil {
		return nil, Errorf(ErrInvalid, `Bad "%s" query filter format. Use ISO 8601 DateTime notation.`, k)
	}
	return func(img *Image) bool {
		at := img.CreatedAt
		if k == "updated_at" {
			at = img.UpdatedAt
		}
		c := at.Compare(t)
		switch op {
		case "eq":
			return c == 0
		case "neq":
			return c != 0
		case "gt":
			return c > 0
		case "gte":
			return c >= 0
		case "lt":
			return c < 0
		}
		return c <= 0
	}, nil
}

// parseISOTime accepts the ISO 8601 forms Glance's iso8601 parser does
// (date, date-time with optional seconds, fraction and zone; UTC default).
func parseISOTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04Z07:00",
		"2006-01-02T15:04", "2006-01-02", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, Errorf(ErrInvalid, "bad time %q", s)
}

// stringField returns a string attribute; ok is false when it is null.
func stringField(img *Image, k string) (string, bool) {
	switch k {
	case "name":
		if img.Name == nil {
			return "", false
		}
		return *img.Name, true
	case "id":
		return img.ID, true
	case "status":
		return string(img.Status), true
	case "visibility":
		return img.Visibility, true
	case "container_format":
		return img.ContainerFormat, img.ContainerFormat != ""
	case "disk_format":
		return img.DiskFormat, img.DiskFormat != ""
	case "owner":
		return img.Owner, img.Owner != ""
	case "checksum":
		return img.Checksum, img.Checksum != ""
	case "os_hash_algo":
		return img.OSHashAlgo, img.OSHashAlgo != ""
	case "os_hash_value":
		return img.OSHashValue, img.OSHashValue != ""
	}
	return "", false
}

// intField returns an integer attribute; ok is false when it is null.
func intField(img *Image, k string) (int64, bool) {
	switch k {
	case "size":
		if img.Size == nil {
			return 0, false
		}
		return *img.Size, true
	case "virtual_size":
		if img.VirtualSize == nil {
			return 0, false
		}
		return *img.VirtualSize, true
	case "min_ram":
		return img.MinRAM, true
	case "min_disk":
		return img.MinDisk, true
	}
	return 0, false
}

// compareImages orders a and b by keys (nulls first when ascending, as
// Glance's SQL backends do).
func compareImages(keys []SortKey, a, b *Image) int {
	for _, k := range keys {
		var c int
		switch k.Key {
		case "size":
			av, aok := intField(a, "size")
			bv, bok := intField(b, "size")
			c = cmpNullable(aok, bok, cmp.Compare(av, bv))
		case "created_at":
			c = a.CreatedAt.Compare(b.CreatedAt)
		case "updated_at":
			c = a.UpdatedAt.Compare(b.UpdatedAt)
		default:
			av, aok := stringField(a, k.Key)
			bv, bok := stringField(b, k.Key)
			c = cmpNullable(aok, bok, strings.Compare(av, bv))
		}
		if c != 0 {
			if k.Desc {
				return -c
			}
			return c
		}
	}
	return 0
}

func cmpNullable(aok, bok bool, c int) int {
	switch {
	case !aok && !bok:
		return 0
	case !aok:
		return -1
	case !bok:
		return 1
	}
	return c
}

// ImageScanner is an optional extension of ImageStore that visits the
// stored records without copying them. The records are shared and
// immutable: visit must not modify them (it may keep them). Reads are
// linearizable unless the context carries LocalRead.
type ImageScanner interface {
	ScanImages(ctx context.Context, visit func(*Image)) error
}

// ImageOrderedScanner is an optional extension of ImageStore that visits
// records that are not deleted in (created_at, id) order — Glance's default list order — from
// just after a marker record (nil: from the start), until visit returns
// false. Records are shared and immutable, as for ImageScanner.
type ImageOrderedScanner interface {
	ScanImagesByCreated(ctx context.Context, desc bool, after *Image, visit func(*Image) bool) error
}

// scanImages visits every record, without copies when the store can.
func (s *Service) scanImages(ctx context.Context, visit func(*Image)) error {
	if sc, ok := s.images.(ImageScanner); ok {
		return sc.ScanImages(ctx, visit)
	}
	all, err := s.images.ListImages(ctx, nil)
	if err != nil {
		return err
	}
	for _, img := range all {
		visit(img)
	}
	return nil
}

// ListImages returns one page of the images the caller may list, filtered
// and ordered by q. It scans the records once and keeps only the best
// Limit of them (a bounded heap), so a page costs O(n log limit), not a
// sort of every image.
func (s *Service) ListImages(ctx context.Context, q *ListQuery) (*ListPage, error) {
	if err := Authorize(ctx, ActionGetImages, Target{}); err != nil {
		return nil, err
	}
	c := CallerFrom(ctx)
	var memberships map[string]*Member
	if c != nil && !c.Admin() && c.ProjectID != "" {
		if ms, err := s.memberStore(); err == nil {
			if memberships, err = ms.MembershipsOf(ctx, c.ProjectID); err != nil {
				return nil, err
			}
		}
	}
	var marker *Image
	if q.Marker != "" {
		m, err := s.images.GetImage(ctx, q.Marker)
		if err != nil || m.Status == StatusDeleted || !CanSee(c, m, memberships[m.ID]) {
			return &ListPage{}, Errorf(ErrInvalid, "No image found with ID %s", q.Marker)
		}
		marker = m
	}
	if q.Limit == 0 {
		return &ListPage{}, nil
	}
	keep := func(img *Image) bool {
		if img.Status == StatusDeleted || img.Status == StatusKilled || img.OSHidden != q.OSHidden {
			return false
		}
		if !listVisible(c, img, q, memberships[img.ID]) {
			return false
		}
		for _, f := range q.filters {
			if !f(img) {
				return false
			}
		}
		return true
	}
	if os, ok := s.images.(ImageOrderedScanner); ok && createdOrder(q.Sort) {
		// The store keeps this order: read only as far as the page needs.
		var page []*Image
		err := os.ScanImagesByCreated(ctx, q.Sort[0].Desc, marker, func(img *Image) bool {
			if keep(img) {
				page = append(page, img)
			}
			return len(page) < q.Limit
		})
		if err != nil {
			return nil, err
		}
		return newListPage(page, q.Limit), nil
	}
	top := newTopK(q.Limit, func(a, b *Image) int { return compareImages(q.Sort, a, b) })
	err := s.scanImages(ctx, func(img *Image) {
		if !keep(img) || (marker != nil && compareImages(q.Sort, img, marker) <= 0) {
			return
		}
		top.add(img)
	})
	if err != nil {
		return nil, err
	}
	return newListPage(top.sorted(), q.Limit), nil
}

// createdOrder reports whether keys are Glance's default order (either
// direction): created_at, then id.
func createdOrder(keys []SortKey) bool {
	return len(keys) == 2 && keys[0].Key == "created_at" && keys[1].Key == "id" && keys[0].Desc == keys[1].Desc
}

// newListPage copies the records of a page; it has a next marker when it
// is full (Glance: the database returned limit rows).
func newListPage(imgs []*Image, limit int) *ListPage {
	page := &ListPage{Images: make([]*Image, len(imgs))}
	for i, img := range imgs {
		page.Images[i] = img.Clone()
	}
	if len(imgs) == limit {
		page.Next = imgs[len(imgs)-1].ID
	}
	return page
}

// listVisible applies Glance's list scope: admins see every image of the
// requested visibility; others see their own, public and shared-with-them
// images (membership in q.MemberStatus). Community images of others are
// listed only with visibility=community or all, for admins too.
func listVisible(c *Caller, img *Image, q *ListQuery, m *Member) bool {
	if q.Visibility != "" && q.Visibility != "all" && img.Visibility != q.Visibility {
		return false
	}
	own := c != nil && c.ProjectID != "" && img.Owner == c.ProjectID
	if q.Visibility == "" && img.Visibility == VisibilityCommunity && !own {
		// Even admins list others' community images only on request.
		return false
	}
	if c == nil || c.Admin() {
		return true
	}
	memberOK := m != nil && (q.MemberStatus == "all" || m.Status == q.MemberStatus)
	switch img.Visibility {
	case VisibilityPublic:
		return true
	case VisibilityCommunity:
		return true
	case VisibilityShared:
		return own || memberOK
	}
	return own
}

// topK keeps the k smallest items seen (by cmp) in a max-heap.
type topK struct {
	k    int
	cmp  func(a, b *Image) int
	heap []*Image
}

func newTopK(k int, cmp func(a, b *Image) int) *topK {
	return &topK{k: k, cmp: cmp, heap: make([]*Image, 0, min(k, 1024))}
}

func (t *topK) add(img *Image) {
	if len(t.heap) < t.k {
		t.heap = append(t.heap, img)
		t.up(len(t.heap) - 1)
		return
	}
	if t.cmp(img, t.heap[0]) >= 0 {
		return
	}
	t.heap[0] = img
	t.down(0)
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if t.cmp(t.heap[i], t.heap[p]) <= 0 {
			return
		}
		t.heap[i], t.heap[p] = t.heap[p], t.heap[i]
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.heap)
	for {
		l, big := 2*i+1, i
		if l < n && t.cmp(t.heap[l], t.heap[big]) > 0 {
			big = l
		}
		if r := l + 1; r < n && t.cmp(t.heap[r], t.heap[big]) > 0 {
			big = r
		}
		if big == i {
			return
		}
		t.heap[i], t.heap[big] = t.heap[big], t.heap[i]
		i = big
	}
}

func (t *topK) sorted() []*Image {
	out := slices.Clone(t.heap)
	slices.SortFunc(out, t.cmp)
	return out
}
