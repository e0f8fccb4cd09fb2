package latchkey

import "time"

// DeclaredKey is one key as an app manifest declares it (package manifest
// reads them from app_manifest.yml; keys.Service.ApplyManifest makes a
// tenant's keys match). A declared key is identified by App, Agent and
// Name: applying the same declaration again finds the key it made and
// changes it in place.
type DeclaredKey struct {
	App   string // the manifest's app name
	Agent string // the agent the key is for
	Name  string // the key's name (default: the agent's name)

	Scopes      []string // default ["agent:activate"]
	Resources   []string // default ["agent:<Agent>"]
	Environment string
	Owner       string
	Meta        map[string]any
	// ExpiresAfter is the key's lifetime from its creation (0: none).
	ExpiresAfter time.Duration
	// AutoRotate and RotationInterval ask for rotation every interval.
	AutoRotate       bool
	RotationInterval time.Duration

	IPAllow       []string
	Countries     []string
	TimeWindows   []TimeWindow
	RateLimits    []RateLimit
	Quota         *Quota
	MaxConcurrent int

	// Source is where the key was declared ("app_manifest.yml:12"), for
	// messages.
	Source string
}

// Manifest is what an app manifest declares: the app and the keys of
// its agents (those with generate: true).
type Manifest struct {
	App     string
	Version string
	Keys    []DeclaredKey
}
