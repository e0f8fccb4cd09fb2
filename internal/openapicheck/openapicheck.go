// Package openapicheck checks HTTP exchanges against the server's OpenAPI
// document, for tests: the end-to-end tests record what they send and get,
// and every documented request and answer must match the document the
// server serves (GET /openapi.json).
//
// It is for tests only (it pulls in an OpenAPI validator the binary does
// not need); no package outside tests imports it.
package openapicheck

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
)

// FreeForm names the objects of free form (maps) whose members strict
// checking must not call undeclared.
var FreeForm = []string{"meta", "details", "totals", "counts", "codes", "by_kind", "by_severity", "claims", "jwks"}

// Checker validates exchanges against one document. It is safe for
// concurrent use.
type Checker struct {
	mu            sync.Mutex
	strict, loose validator.Validator
	free          map[string]bool
}

// New builds a checker for an OpenAPI 3.1 document. Answers are checked
// strictly: besides what the schemas refuse, every field an answer holds
// that its schema does not list is reported (outside FreeForm objects,
// and outside the answers of freeAnswers, paths whose whole answer is of
// free form, such as a map of provider names): the server must not answer
// what it does not describe. Requests are checked without strictness: a
// test may send what the server ignores (an unknown query parameter), and
// the server itself refuses unknown body fields.
func New(doc []byte, freeAnswers ...string) (*Checker, error) {
	build := func(opts ...config.Option) (validator.Validator, error) {
		d, err := libopenapi.NewDocument(doc)
		if err != nil {
			return nil, fmt.Errorf("openapicheck: the document does not parse: %w", err)
		}
		v, errs := validator.NewValidator(d, append([]config.Option{config.WithFormatAssertions()}, opts...)...)
		if len(errs) > 0 {
			return nil, fmt.Errorf("openapicheck: no validator for the document: %v", errs)
		}
		return v, nil
	}
	var ignore []string
	for _, name := range FreeForm {
		ignore = append(ignore, "$.body."+name+".*", "$.body.**."+name+".*")
	}
	strict, err := build(config.WithStrictMode(), config.WithStrictIgnorePaths(ignore...))
	if err != nil {
		return nil, err
	}
	loose, err := build()
	if err != nil {
		return nil, err
	}
	c := &Checker{strict: strict, loose: loose, free: map[string]bool{}}
	for _, p := range freeAnswers {
		c.free[p] = true
	}
	return c, nil
}

// Exchange is one request and its answer, bodies read.
type Exchange struct {
	Method, URL string
	Header      http.Header // the request's
	Body        []byte      // the request's
	Status      int
	RespHeader  http.Header
	RespBody    []byte
}

// Check returns what the document refuses in x: the request (only when
// the server took it, 2xx: tests send bad requests on purpose, and the
// document refuses those as the server does) and the answer, an ndjson
// answer line by line. Nothing for a path the document does not
// describe (a proxy's, a test double's).
func (c *Checker) Check(x Exchange) []string {
	build := func() *http.Request {
		r, err := http.NewRequest(x.Method, x.URL, bytes.NewReader(x.Body))
		if err != nil {
			return nil
		}
		r.Header = x.Header.Clone()
		if r.Header == nil {
			r.Header = http.Header{}
		}
		if len(x.Body) > 0 && r.Header.Get("Content-Type") == "" {
			// The server reads a body without a content type as JSON.
			r.Header.Set("Content-Type", "application/json")
		}
		return r
	}
	if build() == nil {
		return []string{"unparsable URL " + x.URL}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	report := func(what string, errs []*verrors.ValidationError) bool {
		for _, e := range errs {
			if e.IsPathMissingError() || e.IsOperationMissingError() {
				return false // undocumented: not ours to check
			}
		}
		for _, e := range errs {
			line := fmt.Sprintf("%s %s → %d: %s: %s: %s", x.Method, x.URL, x.Status, what, e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				line += fmt.Sprintf("; at %s: %s", se.FieldPath, se.Reason)
			}
			out = append(out, line)
		}
		return true
	}
	if x.Status >= 200 && x.Status < 300 {
		ok, errs := c.loose.ValidateHttpRequestSync(build())
		if !ok && x.Header.Get("Content-Type") == "" && onlyContentType(errs) {
			// A body sent without a content type, which the server read
			// as what the route takes (an import's text): the document
			// can only describe typed bodies.
			ok = true
		}
		if !ok && !report("request", errs) {
			return nil
		}
	}
	parts := [][]byte{x.RespBody}
	if strings.HasPrefix(x.RespHeader.Get("Content-Type"), "application/x-ndjson") {
		parts = bytes.Split(bytes.TrimSuffix(x.RespBody, []byte("\n")), []byte("\n"))
	}
	v := c.strict
	if r := build(); c.free[r.URL.Path] {
		v = c.loose
	}
	for _, part := range parts {
		res := &http.Response{StatusCode: x.Status, Header: x.RespHeader, Body: io.NopCloser(bytes.NewReader(part))}
		if ok, errs := v.ValidateHttpResponse(build(), res); !ok && !report("answer", errs) {
			return nil
		}
	}
	return out
}

// onlyContentType reports whether every problem is an undeclared content
// type.
func onlyContentType(errs []*verrors.ValidationError) bool {
	for _, e := range errs {
		if e.ValidationType != "requestBody" || e.ValidationSubType != "contentType" {
			return false
		}
	}
	return len(errs) > 0
}
