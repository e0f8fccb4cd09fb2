package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// A database file deleted or replaced under a running server does not stop
// SQLite: its connections keep reading and writing the file they opened,
// which nobody will open again, so every write acknowledged from then on is
// lost at the next start. The store therefore remembers the identity of the
// file it opened and compares it with what the path names now (os.Stat and
// os.SameFile: device and inode on Unix, volume and file index on Windows)
// before each write commits, on Ping, and every second in the background.
// Once the file is found gone or replaced the store stays lost until it is
// closed: writes and Ping fail with ErrFileDeleted or ErrFileReplaced (both
// EUnavailable), reads go on from the file SQLite still holds.
//
// The store keeps its own descriptor of the file open until Close, so the
// file's inode cannot be freed and handed to a new file with the same
// number, which would look like the same file.

var (
	// ErrFileDeleted is what writes and Ping answer once the database
	// file has been deleted under the running store.
	ErrFileDeleted = lostError("the database file was deleted while the server ran; writes are refused until it is restored and the server restarted")
	// ErrFileReplaced is what writes and Ping answer once another file
	// has taken the database file's path.
	ErrFileReplaced = lostError("the database file was replaced by another file while the server ran; writes are refused until the server is restarted")
)

func lostError(msg string) error {
	return fmt.Errorf("sqlite: %w: %w", latchkey.Errorf(latchkey.EUnavailable, "%s", msg), latchkey.ErrStoreLost)
}

// fileWatch holds the database file's identity and whether it was lost.
type fileWatch struct {
	path string
	f    *os.File    // held open until close; see above
	id   os.FileInfo // of f, taken at open

	lostFlag atomic.Bool // fast path: set once lost is
	mu       sync.Mutex
	lost     error
	onLost   func(error)
	notified bool

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{} // closed when the watching goroutine ends; nil if none
}

func newFileWatch(path string, f *os.File) (*fileWatch, error) {
	id, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return &fileWatch{path: path, f: f, id: id, stop: make(chan struct{})}, nil
}

// check compares the file at the path with the one opened. It returns nil
// while they are the same file, ErrFileDeleted or ErrFileReplaced from the
// first time they are not, and an EUnavailable error, not remembered, if
// the path cannot be looked at (a permission changed).
func (w *fileWatch) check() error {
	if w.lostFlag.Load() {
		return w.lostErr()
	}
	fi, err := os.Stat(w.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return w.markLost(ErrFileDeleted)
	case err != nil:
		return unavailable("stat", err)
	case !os.SameFile(w.id, fi):
		return w.markLost(ErrFileReplaced)
	}
	return nil
}

func (w *fileWatch) lostErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

// markLost remembers the first loss and tells onLost about it, once.
func (w *fileWatch) markLost(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost == nil {
		w.lost = err
		w.lostFlag.Store(true)
	}
	w.notify()
	return w.lost
}

// notify calls onLost if the loss is known and not yet told. w.mu is
// held throughout, so that no caller is handed the loss (markLost and
// lostErr wait for the lock) before onLost has run: a log that drops the
// loss's repeats learns of it first.
func (w *fileWatch) notify() {
	if w.lost == nil || w.onLost == nil || w.notified {
		return
	}
	w.notified = true
	w.onLost(w.lost)
}

// watch checks the file every interval until close, and has lost told
// once, the first time the file is found gone or replaced (by this check
// or a write's). It may be called once.
func (w *fileWatch) watch(interval time.Duration, lost func(error)) {
	w.mu.Lock()
	w.onLost = lost
	w.notify()
	w.done = make(chan struct{})
	w.mu.Unlock()
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if w.check() != nil && w.lostFlag.Load() {
					return // lost for good; nothing more to notice
				}
			}
		}
	}()
}

// close stops the watching and closes the descriptor. It runs after
// SQLite's own connections are closed: closing a descriptor of a file
// drops every POSIX lock the process holds on it, SQLite's included.
func (w *fileWatch) close() error {
	if w == nil {
		return nil
	}
	w.stopOnce.Do(func() { close(w.stop) })
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if done != nil {
		<-done
	}
	return w.f.Close()
}
