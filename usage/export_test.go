package usage

import "context"

// Tick runs one background flush, as the flusher does every FlushInterval.
func Tick(r *Recorder, ctx context.Context) error { return r.flush(ctx, false) }
