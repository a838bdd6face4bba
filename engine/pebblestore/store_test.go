package pebblestore_test

import (
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
)

func openStore(t testing.TB, cfg pebblestore.Config) *pebblestore.Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := pebblestore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	chunkstoretest.Run(t, func(t *testing.T) engine.GCStore { return openStore(t, pebblestore.Config{}) })
}
