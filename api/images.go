package api

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// readBody reads a bounded request body.
func (s *server) readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, s.o.MaxJSONBody+1))
	if err != nil {
		return nil, newHTTPError(http.StatusBadRequest, "Could not read the request body.")
	}
	if int64(len(b)) > s.o.MaxJSONBody {
		return nil, newHTTPError(http.StatusRequestEntityTooLarge, "Request body larger than %d bytes.", s.o.MaxJSONBody)
	}
	return b, nil
}

// readJSONObject reads a bounded JSON object body.
func (s *server) readJSONObject(r *http.Request) (map[string]json.RawMessage, error) {
	b, err := s.readBody(r)
	if err != nil {
		return nil, err
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

func badJSON() error { return newHTTPError(http.StatusBadRequest, "Malformed JSON in request body.") }

func (s *server) createImage(w http.ResponseWriter, r *http.Request) {
	body, err := s.readJSONObject(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	img, err := s.o.Images.CreateImage(r.Context(), body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Location", baseURL(r)+"/v2/images/"+img.ID)
	h.Set("OpenStack-image-import-methods", strings.Join(engine.ImportMethods, ","))
	h.Set("OpenStack-image-store-ids", engine.StoreID)
	writeImage(w, http.StatusCreated, img)
}

func (s *server) showImage(w http.ResponseWriter, r *http.Request) {
	img, err := s.o.Images.ShowImage(r.Context(), r.PathValue("image_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeImage(w, http.StatusOK, img)
}

func (s *server) listImages(w http.ResponseWriter, r *http.Request) {
	q, err := engine.ParseListQuery(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.o.Images.ListImages(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	first, next := pageLinks("/v2/images", q.Params, page.Next)
	writeRaw(w, http.StatusOK, appendImageList(make([]byte, 0, 512+768*len(page.Images)), page.Images, first, next))
}

// pageLinks builds Glance's first and next links: the request's parameters
// (without marker) re-encoded as Python's urlencode does, then the marker.
func pageLinks(path string, params [][2]string, nextMarker string) (first, next string) {
	var b strings.Builder
	for i, kv := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[0]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[1]))
	}
	first = path
	if b.Len() > 0 {
		first += "?" + b.String()
	}
	if nextMarker != "" {
		sep := "?"
		if b.Len() > 0 {
			sep = "&"
		}
		next = first + sep + "marker=" + url.QueryEscape(nextMarker)
	}
	return first, next
}

func (s *server) patchImage(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != engine.PatchMediaType && ct != engine.PatchMediaTypeV0 {
		w.Header().Set("Accept-Patch", engine.AcceptPatch)
	}
	body, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ops, err := engine.ParsePatch(ct, body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	img, err := s.o.Images.PatchImage(r.Context(), r.PathValue("image_id"), ops)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeImage(w, http.StatusOK, img)
}

func (s *server) deleteImage(w http.ResponseWriter, r *http.Request) {
	s.noContent(w, r, s.o.Images.DeleteImage(r.Context(), r.PathValue("image_id")))
}

func (s *server) deactivate(w http.ResponseWriter, r *http.Request) {
	s.noContent(w, r, s.o.Images.Deactivate(r.Context(), r.PathValue("image_id")))
}

func (s *server) reactivate(w http.ResponseWriter, r *http.Request) {
	s.noContent(w, r, s.o.Images.Reactivate(r.Context(), r.PathValue("image_id")))
}

func (s *server) addTag(w http.ResponseWriter, r *http.Request) {
	s.noContent(w, r, s.o.Images.AddTag(r.Context(), r.PathValue("image_id"), r.PathValue("tag")))
}

func (s *server) deleteTag(w http.ResponseWriter, r *http.Request) {
	s.noContent(w, r, s.o.Images.DeleteTag(r.Context(), r.PathValue("image_id"), r.PathValue("tag")))
}

// noContent answers 204, or the error.
func (s *server) noContent(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) deleteFromStore(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("store_id") != engine.StoreID {
		s.writeError(w, r, engine.Errorf(engine.ErrConflict, "The selected store %s is not available on this node.", r.PathValue("store_id")))
		return
	}
	if _, err := s.o.Images.ShowImage(r.Context(), r.PathValue("image_id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeError(w, r, engine.Errorf(engine.ErrForbidden, "Cannot delete image data from the only store containing it. Consider deleting the image instead."))
}
