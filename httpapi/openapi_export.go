package httpapi

// OpenAPIDocument is the OpenAPI 3.1 document GET /openapi.json serves,
// built from the route table: tests outside this package check the
// traffic they make against it.
func OpenAPIDocument() []byte { return openAPIJSON() }
