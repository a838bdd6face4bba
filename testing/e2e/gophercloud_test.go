package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/members"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/tasks"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// imageClient is a gophercloud image service client for a node without
// authentication (as openstack.NewImageV2 builds it after a catalog lookup).
func imageClient(base string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: time.Minute}}
	pc.SetToken("anything")
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: base + "/", ResourceBase: base + "/v2/", Type: "image"}
}

func TestGophercloud(t *testing.T) {
	node := harness.StartNode(t, harness.NodeOptions{Extra: []string{"--import-allowed-hosts", "127.0.0.1"}})
	c := imageClient(node.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := api{t: t, base: node.URL()}

	// Create, with properties and tags; Get.
	hidden := false
	img, err := images.Create(ctx, c, images.CreateOpts{
		Name: "gc-a", DiskFormat: "raw", ContainerFormat: "bare", Tags: []string{"x", "y"}, MinRAM: 16,
		Hidden: &hidden, Properties: map[string]string{"os_distro": "debian"},
	}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if img.Status != images.ImageStatusQueued || img.Properties["os_distro"] != "debian" || img.MinRAMMegabytes != 16 {
		t.Fatalf("create: %+v", img)
	}

	// Upload and download (full and through a Range request).
	data := randomData(2<<20+3, 31)
	if err := imagedata.Upload(ctx, c, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	rc, err := imagedata.Download(ctx, c, img.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: %d bytes, err %v", len(got), err)
	}
	img, err = images.Get(ctx, c, img.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if img.Status != images.ImageStatusActive || img.SizeBytes != int64(len(data)) || img.Checksum == "" {
		t.Fatalf("get after upload: %+v", img)
	}

	// Update with every patch op gophercloud has.
	updated, err := images.Update(ctx, c, img.ID, images.UpdateOpts{
		images.ReplaceImageName{NewName: "gc-a2"},
		images.ReplaceImageTags{NewTags: []string{"z"}},
		images.ReplaceImageMinDisk{NewMinDisk: 2},
		images.ReplaceImageProtected{NewProtected: true},
		images.UpdateImageProperty{Op: images.AddOp, Name: "k", Value: "v"},
		images.UpdateImageProperty{Op: images.ReplaceOp, Name: "os_distro", Value: "ubuntu"},
	}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if updated.Name != "gc-a2" || !slices.Equal(updated.Tags, []string{"z"}) || updated.MinDiskGigabytes != 2 ||
		!updated.Protected || updated.Properties["k"] != "v" || updated.Properties["os_distro"] != "ubuntu" {
		t.Fatalf("update: %+v", updated)
	}
	if err := images.Delete(ctx, c, img.ID).ExtractErr(); err == nil {
		t.Fatal("deleted a protected image")
	}
	if _, err := images.Update(ctx, c, img.ID, images.UpdateOpts{
		images.ReplaceImageProtected{NewProtected: false},
		images.UpdateImageProperty{Op: images.RemoveOp, Name: "k"},
	}).Extract(); err != nil {
		t.Fatal(err)
	}

	// More images, then list with filters and pagination.
	var ids []string
	for _, name := range []string{"gc-b", "gc-c", "gc-d"} {
		im, err := images.Create(ctx, c, images.CreateOpts{Name: name, DiskFormat: "qcow2", ContainerFormat: "bare", Tags: []string{"y"}}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, im.ID)
	}
	var pages, seen int
	err = images.List(c, images.ListOpts{Limit: 2, SortKey: "name", SortDir: "asc"}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := images.ExtractImages(p)
		if err != nil {
			return false, err
		}
		pages++
		seen += len(list)
		return true, nil
	})
	if err != nil || seen != 4 || pages < 2 {
		t.Fatalf("paginated list: %d images in %d pages, err %v", seen, pages, err)
	}
	all, err := images.List(c, images.ListOpts{Tags: []string{"y"}, DiskFormat: "in:qcow2,vmdk", Sort: "name:desc"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := images.ExtractImages(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "gc-d" || list[2].Name != "gc-b" {
		t.Fatalf("filtered list: %+v", list)
	}

	// Stage + glance-direct import, and web-download.
	if err := imagedata.Stage(ctx, c, ids[0], bytes.NewReader(data[:1<<20])).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if err := imageimport.Create(ctx, c, ids[0], imageimport.CreateOpts{Name: imageimport.GlanceDirectMethod}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(ids[0], "active")
	if err := imageimport.Create(ctx, c, ids[1], imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: serveFile(t, data)}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if m := h.waitStatus(ids[1], "active"); m["size"] != float64(len(data)) {
		t.Fatalf("web-download: %v", m)
	}
	info, err := imageimport.Get(ctx, c).Extract()
	if err != nil || !slices.Contains(info.ImportMethods.Value, "glance-direct") {
		t.Fatalf("import info: %+v %v", info, err)
	}

	// Members.
	m, err := members.Create(ctx, c, img.ID, "proj-g").Extract()
	if err != nil || m.Status != "pending" {
		t.Fatalf("member create: %+v %v", m, err)
	}
	if m, err = members.Update(ctx, c, img.ID, "proj-g", members.UpdateOpts{Status: "accepted"}).Extract(); err != nil || m.Status != "accepted" {
		t.Fatalf("member update: %+v %v", m, err)
	}
	if m, err = members.Get(ctx, c, img.ID, "proj-g").Extract(); err != nil || m.MemberID != "proj-g" {
		t.Fatalf("member get: %+v %v", m, err)
	}
	mp, err := members.List(c, img.ID).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := members.ExtractMembers(mp); err != nil || len(ms) != 1 {
		t.Fatalf("member list: %+v %v", ms, err)
	}
	if err := members.Delete(ctx, c, img.ID, "proj-g").ExtractErr(); err != nil {
		t.Fatal(err)
	}

	// The tasks API needs the admin role, which noauth lacks (as Glance).
	if _, err := tasks.List(c, tasks.ListOpts{}).AllPages(ctx); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Fatalf("tasks list: %v, want 403", err)
	}

	// Delete; a deleted image is gone.
	for _, id := range append(ids, img.ID) {
		if err := images.Delete(ctx, c, id).ExtractErr(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := images.Get(ctx, c, img.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("get deleted image: %v, want 404", err)
	}
}
