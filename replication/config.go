package replication

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// Config configures the replication layer of one node.
type Config struct {
	// SelfID is this node's ID in the node registry.
	SelfID string
	// Replicas is R, the copies every chunk gets (fewer when the cluster
	// has fewer storage nodes); 0 means 3.
	Replicas int
	// Secret is the cluster secret sent on internal requests.
	Secret string
	// HTTPClient carries internal requests; nil means a default client.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// RequestTimeout bounds one request to one node; 0 means 30 s.
	RequestTimeout time.Duration
	// BatchBytes is the size a pusher gathers before sending; 0 means 4 MiB.
	BatchBytes int
	// QueueChunks bounds the chunks queued per remote node (back pressure
	// on uploads); 0 means 256.
	QueueChunks int
	// ClaimTTL is how long a claim protects chunks from the claimed
	// node's GC; 0 means 10 minutes. The claimant renews its claims every
	// ClaimTTL/3 while its uploads still pin the chunks (LocalPins), so a
	// lease outlives its upload by at most ClaimTTL.
	ClaimTTL time.Duration
	// LocalPins is the pin set of this node's uploads; nil disables claim
	// renewal (claims then last ClaimTTL).
	LocalPins *engine.Pins
	// RepairInterval is the period of full repair passes (membership
	// changes start one at once); 0 means 10 minutes.
	RepairInterval time.Duration
	// RepairWorkers is the number of chunk batches a repair pass fetches at
	// once; 0 means 4.
	RepairWorkers int
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.SelfID == "" {
		return errors.New("replication config: empty node ID")
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 4 << 20
	}
	if c.QueueChunks <= 0 {
		c.QueueChunks = 256
	}
	if c.ClaimTTL <= 0 {
		c.ClaimTTL = 10 * time.Minute
	}
	if c.RepairInterval <= 0 {
		c.RepairInterval = 10 * time.Minute
	}
	if c.RepairWorkers <= 0 {
		c.RepairWorkers = 4
	}
	return nil
}
