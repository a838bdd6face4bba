package storagee2e

import (
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// uploadLog returns known_content and hashed_bytes from the node's
// "image uploaded" log line for the image.
func uploadLog(t *testing.T, p *harness.Process, id string) (bool, int64) {
	t.Helper()
	re := regexp.MustCompile(`msg="image uploaded".* image=` + id + ` .*known_content=(true|false) hashed_bytes=(\d+)`)
	all := re.FindAllStringSubmatch(p.Log(), -1)
	if len(all) == 0 {
		t.Fatalf("no upload log line for %s", id)
	}
	m := all[len(all)-1]
	n, _ := strconv.ParseInt(m[2], 10, 64)
	return m[1] == "true", n
}

// checkSums compares the image's checksum and os_hash_value with the
// digests of data, computed here.
func checkSums(t *testing.T, base, id string, data []byte) {
	t.Helper()
	st, img := imageStatus(t, base, id)
	m, s := md5.Sum(data), sha512.Sum512(data)
	if st != "active" || img["checksum"] != hex.EncodeToString(m[:]) || img["os_hash_value"] != hex.EncodeToString(s[:]) || img["os_hash_algo"] != "sha512" {
		t.Fatalf("image %s: %s, checksum %v, os_hash %v %v; want active, %x, sha512 %x", id, st, img["checksum"], img["os_hash_algo"], img["os_hash_value"], m, s)
	}
}

// An upload of content the node already stores takes the digests it
// remembered (hashing nothing), also after a restart; a copy with one byte
// changed gets its own digests, hashing only from the checkpoint before
// the change; once the content is deleted and collected, the node forgets
// it (and follows the changed copy, still stored). Every checksum is
// checked against digests computed here.
func TestReuploadOfKnownContent(t *testing.T) {
	node := harness.StartNode(t, harness.NodeOptions{Extra: []string{"--gc-interval", "0"}})
	data := randomData(70<<20, 30)
	clear(data[10<<20 : 12<<20]) // a zero run, read back as zeros
	base := node.URL()

	first := createImage(t, base, "first")
	upload(t, base, first, data)
	checkSums(t, base, first, data)
	if known, hashed := uploadLog(t, node, first); known || hashed != int64(len(data)) {
		t.Fatalf("first upload: known %v, hashed %d of %d", known, hashed, len(data))
	}

	again := createImage(t, base, "again")
	upload(t, base, again, data)
	checkSums(t, base, again, data)
	if known, hashed := uploadLog(t, node, again); !known || hashed != 0 {
		t.Fatalf("same content again: known %v, hashed %d", known, hashed)
	}

	changed := slices.Clone(data)
	changed[68<<20] ^= 1 // past the 64 MiB checkpoint
	other := createImage(t, base, "changed")
	upload(t, base, other, changed)
	checkSums(t, base, other, changed)
	if known, hashed := uploadLog(t, node, other); known || hashed > int64(len(data))-(64<<20) {
		t.Fatalf("changed copy: known %v, hashed %d, want at most %d", known, hashed, len(data)-(64<<20))
	}

	node.Stop()
	node.Start()
	afterRestart := createImage(t, base, "after restart")
	upload(t, base, afterRestart, data)
	checkSums(t, base, afterRestart, data)
	if known, hashed := uploadLog(t, node, afterRestart); !known || hashed != 0 {
		t.Fatalf("after a restart: known %v, hashed %d", known, hashed)
	}
	checkDownload(t, base, afterRestart, data)

	for _, id := range []string{first, again, afterRestart} {
		if st, b := do(t, "DELETE", base+"/v2/images/"+id, "", nil); st != http.StatusNoContent {
			t.Fatalf("delete %s: %d %s", id, st, b)
		}
	}
	harness.Run(t, t.Context(), nil, harness.Binary(t), "gc", "--url", base, "--grace", "0s")
	last := createImage(t, base, "after gc")
	upload(t, base, last, data)
	checkSums(t, base, last, data)
	// The stream is forgotten, but the changed copy is still stored and
	// starts the same: the upload follows it to the change.
	if known, hashed := uploadLog(t, node, last); known || hashed > int64(len(data))-(64<<20) {
		t.Fatalf("after the content was collected: known %v, hashed %d, want at most %d", known, hashed, len(data)-(64<<20))
	}
	checkDownload(t, base, other, changed)
}
