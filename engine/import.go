package engine

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Import methods Mosaic offers (GET /v2/info/import).
const (
	ImportGlanceDirect = "glance-direct"
	ImportWebDownload  = "web-download"
	ImportCopyImage    = "copy-image"
)

// ImportMethods lists the enabled import methods, in Glance's order.
var ImportMethods = []string{ImportGlanceDirect, ImportWebDownload, ImportCopyImage}

// StoreID names Mosaic's single (replicated, deduplicating) store in
// Glance's multi-store API.
const StoreID = "mosaic"

// Reserved properties Glance itself maintains during an import.
const (
	propImportTask       = "os_glance_import_task"
	propImportingStores  = "os_glance_importing_to_stores"
	propFailedImport     = "os_glance_failed_import"
	importLockStaleAfter = time.Hour
)

// ImportConfig is Glance's [import_filtering_opts] for web-download: which
// URIs the server may fetch. The zero value is Glance's default: http and
// https on ports 80 and 443, and no loopback, private or link-local
// address (Debian's SSRF fixes).
type ImportConfig struct {
	// AllowedHosts, if set, are the only hosts allowed (and they may be
	// loopback or private addresses).
	AllowedHosts []string
	// AllowedPorts, if set, replaces the default ports; AnyPort allows all.
	AllowedPorts []int
	AnyPort      bool
	// Timeout bounds one download; 0 means one hour.
	Timeout time.Duration
}

// backgroundTasks tracks the import tasks a service runs.
type backgroundTasks struct{ wg sync.WaitGroup }

// WaitTasks blocks until the import tasks started so far have finished.
func (s *Service) WaitTasks() { s.bg.wg.Wait() }

// ImportRequest is the body of POST /v2/images/{id}/import.
type ImportRequest struct {
	Method struct {
		Name string `json:"name"`
		URI  string `json:"uri,omitempty"`
	} `json:"method"`
	Stores               []string `json:"stores,omitempty"`
	AllStores            *bool    `json:"all_stores,omitempty"`
	AllStoresMustSucceed *bool    `json:"all_stores_must_succeed,omitempty"`
}

// ParseImportRequest validates an import body (Glance's
// _validate_import_body).
func ParseImportRequest(body map[string]json.RawMessage) (*ImportRequest, error) {
	var req ImportRequest
	raw, ok := body["method"]
	if !ok {
		return nil, Errorf(ErrInvalid, "Import request requires a 'method' field.")
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil, Errorf(ErrInvalid, "Import request requires a 'method' field.")
	}
	if n, ok := m["name"]; !ok || json.Unmarshal(n, &req.Method.Name) != nil {
		return nil, Errorf(ErrInvalid, "Import request requires a 'name' field.")
	}
	if u, ok := m["uri"]; ok {
		_ = json.Unmarshal(u, &req.Method.URI)
	}
	if !slices.Contains(ImportMethods, req.Method.Name) {
		return nil, Errorf(ErrInvalid, "Unknown import method name '%s'.", req.Method.Name)
	}
	for _, k := range []string{"all_stores", "all_stores_must_succeed"} {
		if v, ok := body[k]; ok {
			var b bool
			if json.Unmarshal(v, &b) != nil {
				return nil, Errorf(ErrInvalid, "'%s' must be boolean value", k)
			}
			if k == "all_stores" {
				req.AllStores = &b
			} else {
				req.AllStoresMustSucceed = &b
			}
		}
	}
	if v, ok := body["stores"]; ok && string(v) != "null" {
		if json.Unmarshal(v, &req.Stores) != nil {
			return nil, Errorf(ErrInvalid, "'stores' must be a list of store identifiers")
		}
	}
	return &req, nil
}

// checkStores accepts only Mosaic's store.
func checkStores(stores []string) error {
	for _, st := range stores {
		if st != StoreID {
			return Errorf(ErrConflict, "Store for identifier %s not found", st)
		}
	}
	return nil
}

// Stage ingests data for a later glance-direct import: queued → uploading.
// The data is chunked and hashed now, so the import only commits it.
func (s *Service) Stage(ctx context.Context, id string, r io.Reader) error {
	img, err := s.imageFor(ctx, id, ActionUploadImage)
	if err != nil {
		return err
	}
	if img.Status != StatusQueued {
		return Errorf(ErrConflict, "Image status transition from %s to uploading is not allowed", img.Status)
	}
	ref := &UploadRef{Node: s.cfg.NodeID, Nonce: nonce(), Started: s.now()}
	if _, err := s.transition(ctx, id, StatusQueued, StatusUploading, func(img *Image) { img.Upload = ref; img.Staged = nil }); err != nil {
		if errors.Is(err, ErrConflict) {
			return Errorf(ErrConflict, "Image status transition from %s to uploading is not allowed", img.Status)
		}
		return err
	}
	algo := img.OSHashAlgo
	if algo == "" {
		algo = s.cfg.OSHashAlgo
	}
	// GC: the pins hold the chunks until the record names the staged root.
	pins := s.pins.Begin()
	defer pins.End()
	res, err := s.ingester.Ingest(ctx, r, IngestOptions{OSHashAlgo: algo, MaxSize: s.cfg.ImageSizeCap, Pins: pins})
	if err == nil {
		_, err = s.Update(ctx, id, func(img *Image) error {
			if img.Status != StatusUploading || img.Upload == nil || *img.Upload != *ref {
				return Errorf(ErrGone, "Image %s could not be found after upload. The image may have been deleted during the upload.", id)
			}
			size := res.Size
			img.Size = &size
			img.Upload = nil
			img.Staged = &StagedData{Root: res.Root, Size: res.Size, Checksum: hex.EncodeToString(res.MD5),
				OSHashAlgo: res.OSHashAlgo, OSHashValue: hex.EncodeToString(res.OSHash)}
			return nil
		})
	}
	if err != nil {
		s.unstage(id, ref, err)
		return err
	}
	return nil
}

// unstage returns an image whose stage failed to queued (Glance's _unstage).
func (s *Service) unstage(id string, ref *UploadRef, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Update(ctx, id, func(img *Image) error {
		if img.Status != StatusUploading || img.Upload == nil || *img.Upload != *ref {
			return errAbandon
		}
		img.Status = StatusQueued
		img.Size, img.VirtualSize, img.Upload, img.Staged = nil, nil, nil, nil
		return nil
	})
	if err != nil && !errors.Is(err, errAbandon) {
		s.log.Error("unstage after failed stage", "image", id, "cause", cause, "err", err)
		return
	}
	s.log.Warn("stage failed; image back to queued", "image", id, "err", cause)
}

// Import starts an import task for an image (POST /v2/images/{id}/import)
// and returns it; the work runs in the background.
func (s *Service) Import(ctx context.Context, id string, req *ImportRequest, requestID string) (*Task, error) {
	img, err := s.imageFor(ctx, id, ActionModifyImage)
	if err != nil {
		return nil, err
	}
	if req.Method.Name == ImportCopyImage {
		if err := Authorize(ctx, ActionCopyImage, Target{Image: img}); err != nil {
			return nil, err
		}
	}
	if err := checkStores(req.Stores); err != nil {
		return nil, err
	}
	var uri *url.URL
	switch req.Method.Name {
	case ImportWebDownload:
		if uri, err = s.checkImportURI(req.Method.URI); err != nil {
			return nil, err
		}
		if img.Status != StatusQueued {
			return nil, Errorf(ErrConflict, "Image needs to be in 'queued' state to use '%s' method", req.Method.Name)
		}
	case ImportGlanceDirect:
		if img.Status != StatusUploading || img.Staged == nil {
			return nil, Errorf(ErrConflict, "Image needs to be staged before 'glance-direct' method can be used")
		}
	case ImportCopyImage:
		if img.Status != StatusActive {
			return nil, Errorf(ErrConflict, "Image needs to be in 'active' state to use '%s' method", req.Method.Name)
		}
		// One store holds every image: there is nothing to copy.
		return nil, Errorf(ErrConflict, "Image %s is already present in every store.", id)
	}
	if img.DiskFormat == "" || img.ContainerFormat == "" {
		return nil, Errorf(ErrConflict, "The 'disk_format' and 'container_format' properties must be set prior to importing image data.")
	}
	// A signed image is checked as an upload is: properties and certificate
	// now (400 before anything changes), the signature before it turns active.
	sig, err := s.prepareSignature(ctx, img)
	if err != nil {
		return nil, err
	}
	input, _ := json.Marshal(map[string]any{"image_id": id, "import_req": req, "backend": []string{StoreID}})
	c := CallerFrom(ctx)
	now := s.now()
	task := &Task{ID: s.cfg.NewID(), Type: TaskTypeAPIImport, Status: TaskPending, Input: input,
		ImageID: id, RequestID: requestID, CreatedAt: now, Node: s.cfg.NodeID}
	if c != nil {
		task.Owner, task.UserID = c.ProjectID, c.UserID
	}
	if err := s.putTask(ctx, task); err != nil {
		return nil, err
	}
	// Take the import lock and move the image on, as Glance does before
	// answering 202.
	from := img.Status
	_, err = s.Update(ctx, id, func(img *Image) error {
		if lock := img.Properties[propImportTask]; lock != "" && !s.staleImportLock(ctx, lock) {
			return Errorf(ErrConflict, "Image %s could not be imported because a prior operation is still in progress.", id)
		}
		if img.Status != from {
			return Errorf(ErrConflict, "Image status transition from %s to importing is not allowed", img.Status)
		}
		img.Status = StatusImporting
		if img.Properties == nil {
			img.Properties = map[string]string{}
		}
		img.Properties[propImportTask] = task.ID
		img.Properties[propImportingStores] = StoreID
		delete(img.Properties, propFailedImport)
		return nil
	})
	if err != nil {
		task.Status, task.Message = TaskFailure, err.Error()
		s.finishTask(task)
		return nil, err
	}
	s.bg.wg.Add(1)
	go func() {
		defer s.bg.wg.Done()
		s.runImport(task, req, uri, sig)
	}()
	return task, nil
}

// staleImportLock reports whether the task holding an import lock is gone,
// finished, or silent for too long (Glance's _bust_import_lock).
func (s *Service) staleImportLock(ctx context.Context, taskID string) bool {
	ts, err := s.taskStore()
	if err != nil {
		return true
	}
	t, err := ts.GetTask(ctx, taskID)
	if err != nil {
		return true
	}
	return t.Status == TaskSuccess || t.Status == TaskFailure || s.now().Sub(t.UpdatedAt) > importLockStaleAfter
}

// runImport does an import task's work with the system's authority.
func (s *Service) runImport(task *Task, req *ImportRequest, uri *url.URL, sig *uploadSignature) {
	ctx := context.Background()
	task.Status = TaskProcessing
	if err := s.putTask(ctx, task); err != nil {
		s.log.Error("import task: record processing", "task", task.ID, "err", err)
	}
	var res *StagedData
	var err error
	// GC: downloaded chunks stay pinned until commitImport names them.
	pins := s.pins.Begin()
	defer pins.End()
	switch req.Method.Name {
	case ImportGlanceDirect:
		var img *Image
		if img, err = s.Get(ctx, task.ImageID); err == nil {
			if img.Staged == nil {
				err = Errorf(ErrConflict, "Image %s has no staged data.", task.ImageID)
			} else {
				res = img.Staged
			}
		}
	case ImportWebDownload:
		res, err = s.download(ctx, task.ImageID, uri, pins)
	}
	if err == nil {
		err = s.verifyImport(ctx, task.ImageID, res, sig)
	}
	if err == nil {
		err = s.commitImport(ctx, task, res, sig.result())
	}
	if err != nil {
		s.failImport(ctx, task, err)
		return
	}
	task.Status = TaskSuccess
	task.Result, _ = json.Marshal(map[string]string{"image_id": task.ImageID})
	s.finishTask(task)
	s.log.Info("image imported", "image", task.ImageID, "task", task.ID, "method", req.Method.Name, "size", res.Size)
}

// commitImport makes the image active with the imported data, if the task
// still holds the import lock.
func (s *Service) commitImport(ctx context.Context, task *Task, d *StagedData, sig *SignatureResult) error {
	_, err := s.Update(ctx, task.ImageID, func(img *Image) error {
		if img.Status != StatusImporting || img.Properties[propImportTask] != task.ID {
			return Errorf(ErrGone, "Image %s was changed or deleted during the import.", task.ImageID)
		}
		size := d.Size
		img.Status = StatusActive
		img.Size = &size
		img.VirtualSize = nil
		if img.DiskFormat == "raw" && img.ContainerFormat == "bare" {
			vs := size
			img.VirtualSize = &vs
		}
		img.Checksum, img.OSHashAlgo, img.OSHashValue = d.Checksum, d.OSHashAlgo, d.OSHashValue
		img.ManifestRoot = d.Root
		img.Staged, img.Upload = nil, nil
		img.Signature = sig
		delete(img.Properties, propImportTask)
		delete(img.Properties, propImportingStores)
		return nil
	})
	return err
}

// verifyImport checks a signed image's signature over the imported data
// before it becomes active. The digest is the os_hash when the algorithms
// agree; otherwise the stored data is read once more (Glance reads staged
// data again at import too). A failure fails the task and returns the
// image to queued: Glance's table has no importing → killed transition.
func (s *Service) verifyImport(ctx context.Context, id string, d *StagedData, sig *uploadSignature) error {
	if sig == nil {
		return nil
	}
	var digest []byte
	var err error
	if sig.fromOSHash && d.OSHashAlgo != "" {
		digest, err = hex.DecodeString(d.OSHashValue)
	} else {
		digest, _, err = s.StoredDigest(ctx, &Image{ID: id, ManifestRoot: d.Root}, sig.spec.Hash)
	}
	if err != nil {
		return fmt.Errorf("import %s: signature digest: %w", id, err)
	}
	if err := sig.spec.Verify(sig.cert, digest, VerifyOptions{Now: s.now()}); err != nil {
		s.log.Error("signature verification failed; import refused", "image", id, "reason", err.Error(),
			"certificate", sig.spec.CertificateID)
		return Errorf(ErrInvalid, "Signature verification failed for image %s: %s", id, err.Error())
	}
	return nil
}

// failImport returns the image to queued and records the failure.
func (s *Service) failImport(ctx context.Context, task *Task, cause error) {
	_, err := s.Update(ctx, task.ImageID, func(img *Image) error {
		if img.Status != StatusImporting || img.Properties[propImportTask] != task.ID {
			return errAbandon
		}
		img.Status = StatusQueued
		img.Size, img.VirtualSize, img.Staged, img.Upload = nil, nil, nil, nil
		delete(img.Properties, propImportTask)
		delete(img.Properties, propImportingStores)
		img.Properties[propFailedImport] = StoreID
		return nil
	})
	if err != nil && !errors.Is(err, errAbandon) && !errors.Is(err, ErrNotFound) {
		s.log.Error("import failed and the image could not be reset", "image", task.ImageID, "err", err)
	}
	msg, ok := UserMessage(cause)
	if !ok {
		msg = cause.Error()
	}
	task.Status, task.Message = TaskFailure, msg
	s.finishTask(task)
	s.log.Warn("image import failed", "image", task.ImageID, "task", task.ID, "err", cause)
}

func (s *Service) finishTask(task *Task) {
	exp := s.now().Add(TaskTTL)
	task.ExpiresAt = &exp
	if err := s.putTask(context.Background(), task); err != nil {
		s.log.Error("import task: record result", "task", task.ID, "err", err)
	}
}

// checkImportURI applies the web-download filters to a URI.
func (s *Service) checkImportURI(raw string) (*url.URL, error) {
	bad := Errorf(ErrInvalid, "URI for web-download does not pass filtering: %s", raw)
	if raw == "" {
		return nil, Errorf(ErrInvalid, "URI for web-download does not pass filtering: None")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, bad
	}
	if !s.portAllowed(u) {
		return nil, bad
	}
	if len(s.cfg.Import.AllowedHosts) > 0 && !slices.Contains(s.cfg.Import.AllowedHosts, u.Hostname()) {
		return nil, bad
	}
	return u, nil
}

func (s *Service) portAllowed(u *url.URL) bool {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	if s.cfg.Import.AnyPort {
		return true
	}
	allowed := s.cfg.Import.AllowedPorts
	if len(allowed) == 0 {
		allowed = []int{80, 443}
	}
	return slices.Contains(allowed, p)
}

// restrictedIP reports addresses web-download refuses unless the host is
// explicitly allowed (loopback, private, link-local, unspecified, multicast).
func restrictedIP(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast()
}

// download fetches uri into the store. Every connection (redirects
// included) is checked against the filters at dial time, so a DNS answer
// cannot smuggle in a restricted address.
func (s *Service) download(ctx context.Context, imageID string, uri *url.URL, pins *PinSession) (*StagedData, error) {
	timeout := s.cfg.Import.Timeout
	if timeout == 0 {
		timeout = time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	allowed := s.cfg.Import.AllowedHosts
	dialer := &net.Dialer{Timeout: 30 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip != nil && restrictedIP(ip) && len(allowed) == 0 {
			return fmt.Errorf("web-download: address %s is restricted", host)
		}
		return nil
	}}
	client := &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: nil},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("web-download: too many redirects")
			}
			if _, err := s.checkImportURI(r.URL.String()); err != nil {
				return err
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, Errorf(ErrInvalid, "Failed to download %s: %v", uri.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, Errorf(ErrInvalid, "Failed to download %s: HTTP %d", uri.Redacted(), resp.StatusCode)
	}
	img, err := s.Get(ctx, imageID)
	if err != nil {
		return nil, err
	}
	algo := img.OSHashAlgo
	if algo == "" {
		algo = s.cfg.OSHashAlgo
	}
	res, err := s.ingester.Ingest(ctx, resp.Body, IngestOptions{OSHashAlgo: algo, MaxSize: s.cfg.ImageSizeCap, Pins: pins})
	if err != nil {
		return nil, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength != res.Size {
		return nil, Errorf(ErrInvalid, "Image size %d does not match the Content-Length %d of %s", res.Size, resp.ContentLength, uri.Redacted())
	}
	return &StagedData{Root: res.Root, Size: res.Size, Checksum: hex.EncodeToString(res.MD5),
		OSHashAlgo: res.OSHashAlgo, OSHashValue: hex.EncodeToString(res.OSHash)}, nil
}

// CreateTask starts a legacy import task (POST /v2/tasks, admin only):
// it creates an image from input.image_properties and downloads
// input.import_from into it.
func (s *Service) CreateTask(ctx context.Context, body map[string]json.RawMessage, requestID string) (*Task, error) {
	if err := Authorize(ctx, ActionTasksAPI, Target{}); err != nil {
		return nil, err
	}
	var typ string
	if raw, ok := body["type"]; !ok || json.Unmarshal(raw, &typ) != nil {
		return nil, Errorf(ErrInvalid, "Task type is required.")
	}
	if typ != TaskTypeImport {
		return nil, Errorf(ErrInvalid, "Invalid type value: %s", typ)
	}
	var in struct {
		ImportFrom       string                     `json:"import_from"`
		ImportFromFormat string                     `json:"import_from_format"`
		ImageProperties  map[string]json.RawMessage `json:"image_properties"`
	}
	rawIn, ok := body["input"]
	if !ok || json.Unmarshal(rawIn, &in) != nil {
		return nil, Errorf(ErrInvalid, "Task input is required.")
	}
	for _, k := range []string{"import_from", "import_from_format", "image_properties"} {
		var m map[string]json.RawMessage
		_ = json.Unmarshal(rawIn, &m)
		if _, ok := m[k]; !ok {
			return nil, Errorf(ErrInvalid, "Input does not contain '%s' field", k)
		}
	}
	uri, err := s.checkImportURI(in.ImportFrom)
	if err != nil {
		return nil, Errorf(ErrInvalid, "URI for import_from does not pass filtering: %s", in.ImportFrom)
	}
	props := in.ImageProperties
	if props == nil {
		props = map[string]json.RawMessage{}
	}
	if _, ok := props["disk_format"]; !ok && in.ImportFromFormat != "" {
		props["disk_format"], _ = json.Marshal(in.ImportFromFormat)
	}
	img, err := s.CreateImage(ctx, props)
	if err != nil {
		return nil, err
	}
	c := CallerFrom(ctx)
	now := s.now()
	task := &Task{ID: s.cfg.NewID(), Type: TaskTypeImport, Status: TaskPending, Input: rawIn,
		ImageID: img.ID, RequestID: requestID, CreatedAt: now, Node: s.cfg.NodeID}
	if c != nil {
		task.Owner, task.UserID = c.ProjectID, c.UserID
	}
	if err := s.putTask(ctx, task); err != nil {
		return nil, err
	}
	if _, err := s.transition(ctx, img.ID, StatusQueued, StatusImporting, func(img *Image) {
		img.Properties[propImportTask] = task.ID
	}); err != nil {
		s.failImport(ctx, task, err)
		return task, nil
	}
	req := &ImportRequest{}
	req.Method.Name, req.Method.URI = ImportWebDownload, in.ImportFrom
	sig, err := s.prepareSignature(ctx, img)
	if err != nil {
		s.failImport(ctx, task, err)
		return task, nil
	}
	s.bg.wg.Add(1)
	go func() {
		defer s.bg.wg.Done()
		s.runImport(task, req, uri, sig)
	}()
	return task, nil
}

// RecoverImports fails the import tasks this node was running when it
// stopped and returns their images to queued; stages it was receiving go
// back to queued too.
func (s *Service) RecoverImports(ctx context.Context) error {
	stale, err := s.images.ListImages(ctx, func(img *Image) bool {
		return img.Status == StatusUploading && img.Upload != nil && img.Upload.Node == s.cfg.NodeID
	})
	if err != nil {
		return fmt.Errorf("recover stages: %w", err)
	}
	for _, img := range stale {
		s.unstage(img.ID, img.Upload, errors.New("node restarted during stage"))
	}
	ts, err := s.taskStore()
	if err != nil {
		return nil
	}
	tasks, err := ts.ListTasks(ctx, func(t *Task) bool {
		return t.Node == s.cfg.NodeID && (t.Status == TaskPending || t.Status == TaskProcessing)
	})
	if err != nil {
		return fmt.Errorf("recover imports: %w", err)
	}
	for _, t := range tasks {
		s.failImport(ctx, t, errors.New("The node running the import restarted."))
	}
	return nil
}
