package api

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// checkOctetStream enforces the data endpoints' media type (415 otherwise).
func checkOctetStream(r *http.Request) error {
	raw := r.Header.Get("Content-Type")
	ct, _, _ := mime.ParseMediaType(raw)
	if ct == "application/octet-stream" {
		return nil
	}
	if raw == "" {
		raw = "text/plain"
	}
	return engine.Errorf(engine.ErrUnsupported, "The request media type %s is not supported by this server.", raw)
}

func (s *server) uploadImage(w http.ResponseWriter, r *http.Request) {
	if err := checkOctetStream(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	_, err := s.o.Data.UploadData(r.Context(), r.PathValue("image_id"), r.Body)
	s.noContent(w, r, err)
}

func (s *server) stageImage(w http.ResponseWriter, r *http.Request) {
	if err := checkOctetStream(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.noContent(w, r, s.o.Data.Stage(r.Context(), r.PathValue("image_id"), r.Body))
}

func (s *server) importImage(w http.ResponseWriter, r *http.Request) {
	body, err := s.readJSONObject(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := engine.ParseImportRequest(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(req.Stores) == 0 {
		if st := r.Header.Get("X-Image-Meta-Store"); st != "" {
			req.Stores = []string{st}
		}
	}
	if _, err := s.o.Data.Import(r.Context(), r.PathValue("image_id"), req, w.Header().Get("X-Openstack-Request-Id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

func (s *server) downloadImage(w http.ResponseWriter, r *http.Request) {
	rd, img, err := s.o.Data.OpenData(r.Context(), r.PathValue("image_id"))
	if errors.Is(err, engine.ErrNoData) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer rd.Close()
	size := rd.Size()
	start, end, partial, err := parseRange(r, size)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Verify the first chunk before the headers go out, so a corrupt or
	// missing chunk there is answered with an error status.
	if err := rd.Prime(r.Context(), start); err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if img.Checksum != "" {
		h.Set("Content-MD5", img.Checksum)
	}
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if _, err := rd.CopyRange(r.Context(), w, start, end-start); err != nil {
		// Headers are gone; the client sees a short body. Log it and cut
		// the connection so the client cannot mistake it for the whole image.
		s.log.Error("download failed mid-stream", "image", img.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// parseRange reads Range (or Glance's legacy request Content-Range) and
// returns [start, end), with Glance's answers for bad ranges.
func parseRange(r *http.Request, size int64) (start, end int64, partial bool, err error) {
	spec := r.Header.Get("Range")
	legacy := false
	if spec == "" {
		if cr := r.Header.Get("Content-Range"); cr != "" {
			spec, legacy = cr, true
		}
	}
	if spec == "" {
		return 0, size, false, nil
	}
	invalid := newHTTPError(http.StatusRequestedRangeNotSatisfiable, "The Range requested is not available. Invalid Range header.")
	badStart := newHTTPError(http.StatusRequestedRangeNotSatisfiable,
		"The Range requested is not available. Invalid start position in Range header. Start position MUST be in the inclusive range [0, %d].", max(size-1, 0))
	if legacy {
		// "bytes a-b/len"
		var ok bool
		if spec, ok = strings.CutPrefix(spec, "bytes "); !ok {
			return 0, 0, false, invalid
		}
		if i := strings.IndexByte(spec, '/'); i >= 0 {
			spec = spec[:i]
		}
	} else {
		var ok bool
		spec, ok = strings.CutPrefix(spec, "bytes=")
		if !ok {
			return 0, 0, false, invalid
		}
		if strings.Contains(spec, ",") {
			return 0, 0, false, newHTTPError(http.StatusBadRequest, "Requests with multiple ranges are not supported in Glance. You may make multiple single-range requests instead.")
		}
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, invalid
	}
	switch {
	case a == "": // suffix: last b bytes
		n, e := strconv.ParseInt(b, 10, 64)
		if e != nil || n <= 0 {
			return 0, 0, false, invalid
		}
		start, end = max(size-n, 0), size
	default:
		st, e := strconv.ParseInt(a, 10, 64)
		if e != nil || st < 0 {
			return 0, 0, false, invalid
		}
		start, end = st, size
		if b != "" {
			l, e := strconv.ParseInt(b, 10, 64)
			if e != nil || l < st {
				return 0, 0, false, invalid
			}
			end = min(l+1, size)
		}
	}
	if start >= size {
		return 0, 0, false, badStart
	}
	return start, end, true, nil
}
