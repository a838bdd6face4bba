package chunkstoretest

import (
	"testing"

	"github.com/mosaicimg/mosaic/engine"
)

func TestMemStore(t *testing.T) {
	Run(t, func(t *testing.T) engine.GCStore { return NewMemStore() })
}
