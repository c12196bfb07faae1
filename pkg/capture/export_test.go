package capture

import "github.com/cdcd-io/cdcd/pkg/change"

// SetStartHook overrides the start position requested from the server.
func SetStartHook(c *Capture, f func(slot, held change.LSN) change.LSN) { c.startHook = f }
