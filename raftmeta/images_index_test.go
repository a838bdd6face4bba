package raftmeta

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// TestCreatedIndexFollowsApply checks the list index against a sort of the
// image map through creates, updates, deletes and a snapshot restore.
func TestCreatedIndexFollowsApply(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	st := newState()
	apply := func(ct CommandType, body any) {
		b, err := encodeCommand(ct, 1, body)
		if err != nil {
			t.Fatal(err)
		}
		if res := applyCommand(st, b); res.Err != nil {
			t.Fatalf("%s: %v", ct, res.Err)
		}
	}
	check := func(st *state, stage string) {
		t.Helper()
		var want []*engine.Image
		for _, img := range st.images {
			if img.Status != engine.StatusDeleted {
				want = append(want, img)
			}
		}
		slices.SortFunc(want, createdLess)
		if !slices.Equal(st.byCreated.entries, want) {
			t.Fatalf("%s: index of %d entries differs from the %d sorted images", stage, len(st.byCreated.entries), len(want))
		}
	}
	base := time.Unix(1700000000, 0).UTC()
	for i := range 500 {
		id := fmt.Sprintf("%08x-0000-0000-0000-000000000000", r.Uint32())
		apply(CmdCreateImage, createImageV1{Image: &engine.Image{ID: id, Status: engine.StatusQueued,
			CreatedAt: base.Add(time.Duration(i/7) * time.Second)}})
	}
	check(st, "after creates")
	for _, img := range st.images {
		if r.IntN(3) == 0 {
			up := img.Clone()
			up.Status = engine.StatusDeleted
			apply(CmdUpdateImage, updateImageV1{Image: up, IfRevision: img.Revision})
		} else if r.IntN(10) == 0 {
			apply(CmdDeleteImage, deleteImageV1{ID: img.ID, IfRevision: img.Revision})
		}
	}
	check(st, "after updates and deletes")
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, st.view()); err != nil {
		t.Fatal(err)
	}
	back, err := readSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	check(back, "after restore")
}
