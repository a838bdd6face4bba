package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
)

// storageFlags are serve's garbage-collection settings.
type storageFlags struct {
	gcInterval time.Duration
	gcGrace    time.Duration
	memtable   uint64
}

func (f *storageFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.gcInterval, "gc-interval", time.Hour, "run chunk garbage collection this often (0 disables the periodic run)")
	fs.DurationVar(&f.gcGrace, "gc-grace", time.Hour, "never sweep chunks younger than this")
	fs.Uint64Var(&f.memtable, "chunk-memtable-bytes", pebblestore.DefaultMemTableSize, "size of each of the chunk store's memtables (chunks are durable once flushed from one)")
}

// adminPrefix is where a node serves its storage operations (GC, usage)
// for the mosaic CLI. They are not part of the Glance API and answer only
// clients on loopback.
const adminPrefix = "/mosaic/v1/"

// withStorageAdmin routes adminPrefix to the storage operations and
// everything else to next.
func withStorageAdmin(next http.Handler, gc *engine.Collector, svc *engine.Service, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	admin := http.NewServeMux()
	admin.HandleFunc("POST "+adminPrefix+"gc", func(w http.ResponseWriter, r *http.Request) {
		grace := gc.Grace()
		if g := r.URL.Query().Get("grace"); g != "" {
			d, err := time.ParseDuration(g)
			if err != nil || d < 0 {
				writeAdmin(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("bad grace %q", g)})
				return
			}
			grace = d
		}
		st, err := gc.CollectWithGrace(r.Context(), grace)
		if err != nil {
			log.Error("gc requested by CLI failed", "err", err)
			writeAdmin(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeAdmin(w, http.StatusOK, st)
	})
	admin.HandleFunc("GET "+adminPrefix+"gc", func(w http.ResponseWriter, r *http.Request) {
		writeAdmin(w, http.StatusOK, gc.Last())
	})
	admin.HandleFunc("GET "+adminPrefix+"usage", func(w http.ResponseWriter, r *http.Request) {
		u, err := svc.StorageUsage(r.Context())
		if err != nil {
			writeAdmin(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeAdmin(w, http.StatusOK, u)
	})
	mux.Handle(adminPrefix, loopbackOnly(admin))
	return mux
}

func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			writeAdmin(w, http.StatusForbidden, map[string]string{"error": "storage operations answer loopback clients only"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeAdmin(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// adminCall does one request to a node's storage operations.
func adminCall(ctx context.Context, method, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	if tok := os.Getenv("OS_AUTH_TOKEN"); tok != "" { // an admin's token, with --auth token|keystone
		req.Header.Set("X-Auth-Token", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

// gcCommand is `mosaic gc`: run a collection on a node now.
func gcCommand(ctx context.Context, args []string) error {
	fs := newFlagSet("gc")
	url := fs.String("url", "http://127.0.0.1:9292", "the node's API base URL")
	grace := fs.String("grace", "", "sweep chunks older than this (default: the node's --gc-grace)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u := strings.TrimSuffix(*url, "/") + adminPrefix + "gc"
	if *grace != "" {
		if _, err := time.ParseDuration(*grace); err != nil {
			return fmt.Errorf("--grace %q: %w", *grace, err)
		}
		u += "?grace=" + *grace
	}
	var st engine.GCStats
	if err := adminCall(ctx, http.MethodPost, u, &st); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(st)
	}
	fmt.Printf("gc: %d images marked (%d live chunks), %d chunks scanned, %d swept (%s), %d kept as younger than %v, %d kept pinned by uploads, %d chunks left, took %v\n",
		st.Images, st.Marked, st.Scanned, st.Swept, bytesHuman(st.SweptBytes), st.KeptYoung, st.Grace, st.KeptPinned, st.ChunksAfter, st.Duration.Round(time.Millisecond))
	return nil
}

// usageCommand is `mosaic usage`: a node's storage report.
func usageCommand(ctx context.Context, args []string) error {
	fs := newFlagSet("usage")
	url := fs.String("url", "http://127.0.0.1:9292", "the node's API base URL")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var u engine.Usage
	if err := adminCall(ctx, http.MethodGet, strings.TrimSuffix(*url, "/")+adminPrefix+"usage", &u); err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(u)
	}
	fmt.Printf("images: %d, logical %s, referenced %s, dedup ratio %.2f\n", u.Images, bytesHuman(u.LogicalBytes), bytesHuman(u.ReferencedBytes), u.DedupRatio)
	fmt.Printf("store: %d chunks, %s uncompressed, %s stored, compression ratio %.2f\n\n", u.Store.Chunks, bytesHuman(u.Store.UniqueBytes), bytesHuman(u.Store.StoredBytes), u.CompressionRatio)
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tNAME\tSIZE\tZERO\tCHUNKS\tUNIQUE\tUNIQUE STORED")
	for _, iu := range u.PerImage {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", iu.ID, iu.Name, bytesHuman(iu.Size), bytesHuman(iu.ZeroBytes), iu.Chunks, bytesHuman(iu.UniqueBytes), bytesHuman(iu.UniqueStoredBytes))
	}
	return tw.Flush()
}

func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
