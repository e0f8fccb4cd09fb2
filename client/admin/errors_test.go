package admin_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/wire"
)

// Every non-2xx answer is an *Error with the wire code: the server's when
// its body is the API's error shape, else the one wire.CodeForStatus gives
// the status, so that a proxy's own 502, 503 or 504 page is unavailable.
func TestRefusalsCarryTheWireCode(t *testing.T) {
	statuses := []int{400, 401, 403, 404, 409, 429, 500, 502, 503, 504}
	for _, status := range statuses {
		for _, withBody := range []bool{true, false} {
			name := strconv.Itoa(status) + map[bool]string{true: "JSONBody", false: "ProxyPage"}[withBody]
			t.Run(name, func(t *testing.T) {
				serverCode := wire.CodeForStatus(status)
				if status == 502 || status == 504 {
					serverCode = wire.EInternal // what a server could say with these; a proxy's page says nothing
				}
				answer, ctype := `<html><body><h1>`+http.StatusText(status)+`</h1></body></html>`, "text/html"
				if withBody {
					answer, ctype = `{"error":{"code":"`+serverCode+`","message":"the server's reason","request_id":"req-body"}}`, "application/json"
				}
				c, _ := startRecorder(t, status, answer, http.Header{"Content-Type": {ctype}, "X-Request-Id": {"req-header"}, "Retry-After": {"7"}})
				_, err := c.ListKeys(context.Background(), admin.KeyFilter{})
				var e *admin.Error
				if !errors.As(err, &e) {
					t.Fatalf("error %v (%T), want *admin.Error", err, err)
				}
				wantCode, wantMsg, wantID := wire.CodeForStatus(status), "the server answered "+strconv.Itoa(status)+" "+http.StatusText(status), "req-header"
				if withBody {
					wantCode, wantMsg, wantID = serverCode, "the server's reason", "req-body"
				}
				if e.Code != wantCode || e.Status != status || e.Message != wantMsg || e.RequestID != wantID || e.RetryAfter != 7*time.Second || !e.Refused() {
					t.Errorf("got %+v, want code %q, status %d, message %q, request id %q", e, wantCode, status, wantMsg, wantID)
				}
				if !errors.Is(err, &admin.Error{Code: wantCode}) || admin.ErrorCode(err) != wantCode {
					t.Errorf("errors.Is/ErrorCode do not find %q in %v", wantCode, err)
				}
			})
		}
	}
	t.Run("ProxyGatewayErrorsAreUnavailable", func(t *testing.T) {
		for _, s := range []int{502, 503, 504} {
			if wire.CodeForStatus(s) != wire.EUnavailable {
				t.Errorf("%d maps to %q", s, wire.CodeForStatus(s))
			}
		}
	})
	t.Run("UnknownCodeTakesTheStatusCode", func(t *testing.T) {
		c, _ := startRecorder(t, 409, `{"error":{"code":"sideways","message":"m"}}`, nil)
		_, err := c.GetKey(context.Background(), "key_1")
		if admin.ErrorCode(err) != wire.EConflict {
			t.Errorf("error %v, want conflict", err)
		}
	})
}

// A 2xx answer that is not the JSON the method reads is an internal
// *Error with its status, not a refusal.
func TestUnreadableAnswer(t *testing.T) {
	c, _ := startRecorder(t, 200, `<html>a login page</html>`, http.Header{"Content-Type": {"text/html"}})
	_, err := c.GetKey(context.Background(), "key_1")
	var e *admin.Error
	if !errors.As(err, &e) || e.Code != wire.EInternal || e.Status != 200 || e.Refused() {
		t.Fatalf("error %v, want an internal *admin.Error with status 200", err)
	}
}

func TestTransportErrors(t *testing.T) {
	t.Run("Refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, err := admin.New("http://"+addr, adminKey)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ListKeys(context.Background(), admin.KeyFilter{})
		var te *admin.TransportError
		if !errors.As(err, &te) || te.Timeout || te.Status != 0 || !errors.Is(err, syscall.ECONNREFUSED) || admin.ErrorCode(err) != wire.EUnavailable {
			t.Fatalf("error %v (%T), want a *TransportError for a refused connection", err, err)
		}
		if te.URL != "http://"+addr+"/v1/keys" || te.Method != "GET" {
			t.Errorf("TransportError names %s %s", te.Method, te.URL)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}))
		defer srv.Close()
		defer close(release)
		c, err := admin.New(srv.URL, adminKey, admin.WithTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = c.GetKey(context.Background(), "key_1")
		var te *admin.TransportError
		if !errors.As(err, &te) || !te.Timeout {
			t.Fatalf("error %v (%T), want a *TransportError with Timeout", err, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the call took %s with a timeout of 100ms", d)
		}
	})
	t.Run("AnswerBrokeOff", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"keys":[`))
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
				}
			}
		}))
		defer srv.Close()
		c, err := admin.New(srv.URL, adminKey)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ListKeys(context.Background(), admin.KeyFilter{})
		var te *admin.TransportError
		if !errors.As(err, &te) || te.Status != 200 || te.Timeout {
			t.Fatalf("error %v (%T), want a *TransportError with status 200", err, err)
		}
	})
}

// When the caller's context ends, the call stops and returns the
// context's error as it is, for a stream too.
func TestContextCancellation(t *testing.T) {
	arrived := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the upload, so that the server notices the client going.
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	c, err := admin.New(srv.URL, adminKey, admin.WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(context.Context) error{
		"Call":   func(ctx context.Context) error { _, err := c.VerifyAudit(ctx); return err },
		"Export": func(ctx context.Context) error { _, err := c.ExportKeys(ctx); return err },
		"Import": func(ctx context.Context) error {
			_, err := c.ImportKeys(ctx, strings.NewReader("lk_x\n"), admin.ImportParams{})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-arrived:
				case <-time.After(5 * time.Second):
				}
				cancel()
			}()
			start := time.Now()
			err := call(ctx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v (%T), want context.Canceled", err, err)
			}
			var te *admin.TransportError
			if errors.As(err, &te) {
				t.Errorf("a cancellation is reported as a transport error: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the call took %s after its context was cancelled", d)
			}
		})
	}
	t.Run("AlreadyCancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.GetKey(ctx, "key_1"); !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

// No error holds the admin key or a value sent, even from a server (or a
// proxy) that echoes the request back in its message or request id.
func TestErrorsNeverHoldTheKeyOrAValue(t *testing.T) {
	const secret = "sk-proj-very-secret-value"
	const caller = "lk_the_callers_own_plaintext_key"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 4096)
		n, _ := r.Body.Read(buf)
		echo := r.Header.Get("Authorization") + " " + string(buf[:n])
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"code":"invalid","message":` + strconv.Quote(echo) + `}}`))
	}))
	defer srv.Close()
	c, err := admin.New(srv.URL, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var errs []error
	_, err = c.ListKeys(ctx, admin.KeyFilter{})
	errs = append(errs, err)
	_, err = c.PutSecret(ctx, "openai", admin.SecretParams{Value: secret})
	errs = append(errs, err)
	_, err = c.VerifyKey(ctx, admin.VerifyRequest{Key: caller})
	errs = append(errs, err)
	_, err = c.ExportKeys(ctx)
	errs = append(errs, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	dc, _ := admin.New("http://"+down, adminKey)
	_, err = dc.PutSecret(ctx, "openai", admin.SecretParams{Value: secret})
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d succeeded", i)
		}
		for _, v := range []string{adminKey, secret, caller} {
			if strings.Contains(err.Error(), v) {
				t.Errorf("call %d: error %q holds a key or a value", i, err)
			}
			var e *admin.Error
			if errors.As(err, &e) && (strings.Contains(e.Message, v) || strings.Contains(e.RequestID, v)) {
				t.Errorf("call %d: *Error %+v holds a key or a value", i, e)
			}
		}
	}
}
