package openapicheck

import (
	"net/http"
	"testing"
)

const doc = `{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
 "paths": {"/v1/things": {"post": {
   "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false}}}},
   "responses": {
     "201": {"description": "made", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "string"}, "meta": {"type": "object"}}, "required": ["id"]}}}},
     "400": {"description": "bad", "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}}}}}}`

func TestCheckerReportsWhatTheDocumentRefuses(t *testing.T) {
	c, err := New([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	js := http.Header{"Content-Type": {"application/json"}}
	x := func(body string, status int, resp string) Exchange {
		return Exchange{Method: "POST", URL: "http://x/v1/things", Header: js, Body: []byte(body), Status: status, RespHeader: js, RespBody: []byte(resp)}
	}
	for name, tc := range map[string]struct {
		x    Exchange
		want bool // problems expected
	}{
		"Good":                       {x(`{"name": "a"}`, 201, `{"id": "t1", "meta": {"free": 1}}`), false},
		"AnswerWrongType":            {x(`{"name": "a"}`, 201, `{"id": 7}`), true},
		"AnswerUndeclaredField":      {x(`{"name": "a"}`, 201, `{"id": "t1", "extra": true}`), true},
		"TakenRequestOutsideSchema":  {x(`{"nom": "a"}`, 201, `{"id": "t1"}`), true},
		"BodyWithoutContentType":     {Exchange{Method: "POST", URL: "http://x/v1/things", Body: []byte(`{"name": "a"}`), Status: 201, RespHeader: js, RespBody: []byte(`{"id": "t1"}`)}, false},
		"UnknownQueryParameter":      {Exchange{Method: "POST", URL: "http://x/v1/things?debug=1", Header: js, Body: []byte(`{"name": "a"}`), Status: 201, RespHeader: js, RespBody: []byte(`{"id": "t1"}`)}, false},
		"RefusedBadRequestIsFine":    {x(`{"nom": "a"}`, 400, `{"error": "invalid"}`), false},
		"RefusedWithUndescribedBody": {x(`{"nom": "a"}`, 400, `{"oops": 1}`), true},
		"UndocumentedPath":           {Exchange{Method: "GET", URL: "http://x/elsewhere", Status: 200, RespHeader: js, RespBody: []byte(`[]`)}, false},
	} {
		t.Run(name, func(t *testing.T) {
			got := c.Check(tc.x)
			if (len(got) > 0) != tc.want {
				t.Fatalf("problems %q, want some: %v", got, tc.want)
			}
		})
	}
}
