package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/internal/openapicheck"
)

// The end-to-end tests' requests to Latchkey servers, and the answers,
// are checked against the OpenAPI document the servers serve (issue 12:
// every documented request and response of the end-to-end tests), when
// the package's tests end (TestMain). Only exchanges with a server the
// tests started count (not nginx's, Caddy's or a test double's), and of
// each kind (method, route, status) the first few: the suite sends
// thousands of alike verifications.
var openAPITraffic = struct {
	sync.Mutex
	bases []string // the servers' base URLs
	seen  map[string]int
	got   []openapicheck.Exchange
}{seen: map[string]int{}}

const (
	openAPIPerKind  = 3
	openAPIMaxTotal = 3000
)

// registerServer makes the exchanges with base checked.
func registerServer(base string) {
	openAPITraffic.Lock()
	defer openAPITraffic.Unlock()
	openAPITraffic.bases = append(openAPITraffic.bases, base)
}

// idSegment is a path segment that names an object (key_01H…, a
// webhook's, a delivery's) or a value (a secret's, a policy's name is
// kept: routes name it by position, and few tests use many of them).
var idSegment = regexp.MustCompile(`^[a-z]+_[0-9A-Za-z]{16,}$`)

// recordExchange keeps x to be checked, if it is with a server the tests
// started and its kind has not been seen often enough.
func recordExchange(x openapicheck.Exchange) {
	openAPITraffic.Lock()
	defer openAPITraffic.Unlock()
	path := ""
	for _, b := range openAPITraffic.bases {
		if rest, ok := strings.CutPrefix(x.URL, b); ok && (rest == "" || rest[0] == '/') {
			path = rest
			break
		}
	}
	if path == "" || len(openAPITraffic.got) >= openAPIMaxTotal {
		return
	}
	path, _, _ = strings.Cut(path, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if idSegment.MatchString(s) {
			segs[i] = "*"
		}
	}
	kind := fmt.Sprintf("%s %s %d", x.Method, strings.Join(segs, "/"), x.Status)
	if openAPITraffic.seen[kind] >= openAPIPerKind {
		return
	}
	openAPITraffic.seen[kind]++
	openAPITraffic.got = append(openAPITraffic.got, x)
}

// checkOpenAPITraffic checks every recorded exchange against the
// document and returns what it refuses.
func checkOpenAPITraffic() (checked int, problems []string, err error) {
	// The document itself and the seed route's map of providers are
	// answers of free form.
	c, err := openapicheck.New(httpapi.OpenAPIDocument(), "/openapi.json", "/llm-keys")
	if err != nil {
		return 0, nil, err
	}
	openAPITraffic.Lock()
	defer openAPITraffic.Unlock()
	for _, x := range openAPITraffic.got {
		problems = append(problems, c.Check(x)...)
	}
	return len(openAPITraffic.got), problems, nil
}

// exchangeOf makes the record of a request the e2e helpers sent.
func exchangeOf(req *http.Request, body []byte, res *http.Response, raw []byte) openapicheck.Exchange {
	return openapicheck.Exchange{
		Method: req.Method, URL: req.URL.String(), Header: req.Header.Clone(), Body: body,
		Status: res.StatusCode, RespHeader: res.Header.Clone(), RespBody: raw,
	}
}
