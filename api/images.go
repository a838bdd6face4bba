package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// readJSONObject reads a bounded JSON object body.
func (s *server) readJSONObject(r *http.Request) (map[string]json.RawMessage, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, s.o.MaxJSONBody+1))
	if err != nil {
		return nil, newHTTPError(http.StatusBadRequest, "Could not read the request body.")
	}
	if int64(len(b)) > s.o.MaxJSONBody {
		return nil, newHTTPError(http.StatusRequestEntityTooLarge, "Request body larger than %d bytes.", s.o.MaxJSONBody)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, newHTTPError(http.StatusBadRequest, "Body expected in request.")
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, badJSON()
	}
	if _, ok := v.(map[string]any); !ok {
		// Glance answers 500 here; a client error deserves 400 (docs/compat.md).
		return nil, newHTTPError(http.StatusBadRequest, "The request body must be a JSON object.")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, badJSON()
	}
	return m, nil
}

func (s *server) createImage(w http.ResponseWriter, r *http.Request) {
	body, err := s.readJSONObject(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	img, err := imageFromCreate(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if img.Visibility == engine.VisibilityPublic {
		s.writeError(w, r, forbidden("You are not authorized to complete publicize_image action."))
		return
	}
	out, err := s.o.Images.Create(r.Context(), img)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", baseURL(r)+"/v2/images/"+out.ID)
	w.Header().Set("OpenStack-image-import-methods", "glance-direct,web-download,copy-image")
	writeJSON(w, http.StatusCreated, imageJSON(out))
}

func (s *server) showImage(w http.ResponseWriter, r *http.Request) {
	img, err := s.o.Images.Get(r.Context(), r.PathValue("image_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, imageJSON(img))
}

func (s *server) listImages(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.o.Images.List(r.Context(), func(img *engine.Image) bool {
		return img.Status != engine.StatusKilled && !img.OSHidden
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	slices.SortFunc(imgs, func(a, b *engine.Image) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	limit := 25
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.writeError(w, r, newHTTPError(http.StatusBadRequest, "limit param must be an integer"))
			return
		}
		limit = min(n, 1000)
	}
	if m := r.URL.Query().Get("marker"); m != "" {
		i := slices.IndexFunc(imgs, func(img *engine.Image) bool { return img.ID == m })
		if i < 0 {
			s.writeError(w, r, newHTTPError(http.StatusBadRequest, "marker not found"))
			return
		}
		imgs = imgs[i+1:]
	}
	out := map[string]any{"first": "/v2/images", "schema": "/v2/schemas/images"}
	page := imgs[:min(limit, len(imgs))]
	list := make([]map[string]any, 0, len(page))
	for _, img := range page {
		list = append(list, imageJSON(img))
	}
	out["images"] = list
	if len(page) == limit && limit > 0 {
		q := r.URL.Query()
		q.Set("marker", page[len(page)-1].ID)
		out["next"] = "/v2/images?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) deleteImage(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		s.writeError(w, r, newHTTPError(http.StatusBadRequest, "A body is not expected with this request."))
		return
	}
	if err := s.o.Images.Delete(r.Context(), r.PathValue("image_id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) uploadImage(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/octet-stream" {
		s.writeError(w, r, engine.Errorf(engine.ErrUnsupported, "The Content-Type %q is not supported; use application/octet-stream.", r.Header.Get("Content-Type")))
		return
	}
	if _, err := s.o.Images.Upload(r.Context(), r.PathValue("image_id"), r.Body); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) downloadImage(w http.ResponseWriter, r *http.Request) {
	rd, img, err := s.o.Images.Open(r.Context(), r.PathValue("image_id"))
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
// returns [start, end).
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
	unsatisfiable := newHTTPError(http.StatusRequestedRangeNotSatisfiable, "Requested range not satisfiable")
	if legacy {
		// "bytes a-b/len"
		spec = strings.TrimPrefix(spec, "bytes ")
		if i := strings.IndexByte(spec, '/'); i >= 0 {
			spec = spec[:i]
		}
	} else {
		var ok bool
		spec, ok = strings.CutPrefix(spec, "bytes=")
		if !ok {
			return 0, 0, false, unsatisfiable
		}
		if strings.Contains(spec, ",") {
			return 0, 0, false, newHTTPError(http.StatusBadRequest, "Multiple ranges are not supported.")
		}
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, unsatisfiable
	}
	switch {
	case a == "": // suffix: last b bytes
		n, e := strconv.ParseInt(b, 10, 64)
		if e != nil || n <= 0 {
			return 0, 0, false, unsatisfiable
		}
		start, end = max(size-n, 0), size
	default:
		s, e := strconv.ParseInt(a, 10, 64)
		if e != nil || s < 0 {
			return 0, 0, false, unsatisfiable
		}
		start, end = s, size
		if b != "" {
			l, e := strconv.ParseInt(b, 10, 64)
			if e != nil || l < s {
				return 0, 0, false, unsatisfiable
			}
			end = min(l+1, size)
		}
	}
	if start >= size {
		return 0, 0, false, unsatisfiable
	}
	return start, end, true, nil
}

func (s *server) usage(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"usage": map[string]any{}}
	if s.o.Usage != nil {
		u, err := s.o.Usage.Usage(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out["mosaic"] = u
	}
	writeJSON(w, http.StatusOK, out)
}
