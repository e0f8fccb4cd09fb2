// Command benchbare is the baseline for scripts/bench: a bare net/http server
// whose one handler answers 200 with a tiny body. Latchkey's forward-auth
// figures are reported as a ratio to it, measured in the same run on the same
// core, so that the machine's speed cancels out.
//
// With -verifier it is the ideal forward-auth verifier instead: it answers
// every request at once as GET /v1/auth answers an allowed key, 200 with an
// empty body and the four identity headers, so that nginx's auth_request
// does the same work with its answer as with Latchkey's. The body matters:
// auth_request reads only the headers of the subrequest's answer, and nginx
// keeps an upstream connection alive only when the answer was read to its
// end, so an answer with a body (like "ok\n") costs a new TCP connection per
// auth subrequest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchbare:", err)
		os.Exit(1)
	}
}

// body is what every request gets; small, so that the figure is the cost of
// HTTP itself, like an auth answer with headers only.
var body = []byte("ok\n")

// identity is what the ideal verifier answers: the headers GET /v1/auth sets
// for an allowed key, with values of the same shape as Latchkey's.
var identity = map[string][]string{
	"X-Latchkey-Key-Id": {"key_01JEBENCH0000000000000000"},
	"X-Latchkey-Tenant": {"ten_01JEBENCH0000000000000000"},
	"X-Latchkey-Owner":  {"bench"},
	"X-Latchkey-Scopes": {"data:read"},
}

func run(args []string) error {
	fs := flag.NewFlagSet("benchbare", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "address to listen on")
	verifier := fs.Bool("verifier", false, "answer as an ideal forward-auth verifier: 200, identity headers, no body")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("unexpected arguments")
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	if *verifier {
		handler = func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			for k, v := range identity {
				h[k] = v
			}
			w.WriteHeader(http.StatusOK)
		}
	}
	srv := &http.Server{
		Addr:              *addr,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// No access log, no middleware: anything more is not the baseline.
		ErrorLog: log.New(os.Stderr, "benchbare: ", 0),
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
