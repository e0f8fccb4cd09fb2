package client

import (
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// dynamicKey is the seed client's settings block ("dynamic_key:" in
// fastagent.config.yaml), which programs moving to Latchkey already have.
type dynamicKey struct {
	Enabled              *bool             `yaml:"enabled"`
	EndpointURL          string            `yaml:"endpoint_url"`
	CacheDurationSeconds *float64          `yaml:"cache_duration_seconds"`
	TimeoutSeconds       *float64          `yaml:"timeout_seconds"`
	AuthToken            string            `yaml:"auth_token"`
	Headers              map[string]string `yaml:"headers"`
}

// maxSeconds bounds the durations the settings may give (a year), so a
// typo cannot overflow a time.Duration.
const maxSeconds = 366 * 24 * 3600

// ParseDynamicKeyConfig reads the seed client's settings: a YAML (or JSON)
// document holding a dynamic_key block, or the block's fields at the top
// level:
//
//	dynamic_key:
//	  enabled: true
//	  endpoint_url: "http://127.0.0.1:8080/keys"
//	  cache_duration_seconds: 1800
//	  timeout_seconds: 10
//	  auth_token: "lk_…"
//	  headers: {X-Team: ml}
//
// A block with enabled: false gives a config with no EndpointURL, so
// Secrets reads only its fallbacks. Other fields of the document are
// ignored; unknown fields inside the block are errors, so a misspelt
// setting is noticed. The error never quotes auth_token.
func ParseDynamicKeyConfig(data []byte) (SecretsConfig, error) {
	var doc struct {
		DynamicKey yaml.Node `yaml:"dynamic_key"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return SecretsConfig{}, &Error{Code: CodeInvalid, Message: "settings: not a YAML or JSON document of settings"}
	}
	var dk dynamicKey
	if doc.DynamicKey.Kind != 0 {
		if err := decodeStrict(&doc.DynamicKey, &dk); err != nil {
			return SecretsConfig{}, err
		}
	} else {
		var top yaml.Node
		if err := yaml.Unmarshal(data, &top); err != nil || len(top.Content) == 0 {
			return SecretsConfig{}, &Error{Code: CodeInvalid, Message: "settings: no dynamic_key block"}
		}
		if err := decodeStrict(top.Content[0], &dk); err != nil {
			return SecretsConfig{}, err
		}
	}
	cfg := SecretsConfig{AuthToken: dk.AuthToken, Headers: dk.Headers}
	if dk.Enabled == nil || *dk.Enabled {
		cfg.EndpointURL = strings.TrimRight(dk.EndpointURL, "/")
		if cfg.EndpointURL == "" {
			return SecretsConfig{}, &Error{Code: CodeInvalid, Message: "settings: endpoint_url is missing (or set enabled: false)"}
		}
		if !strings.HasPrefix(cfg.EndpointURL, "http://") && !strings.HasPrefix(cfg.EndpointURL, "https://") {
			return SecretsConfig{}, &Error{Code: CodeInvalid, Message: "settings: endpoint_url must be an http:// or https:// URL"}
		}
	}
	for name, v := range map[string]*float64{"cache_duration_seconds": dk.CacheDurationSeconds, "timeout_seconds": dk.TimeoutSeconds} {
		if v != nil && (*v <= 0 || *v > maxSeconds) {
			return SecretsConfig{}, &Error{Code: CodeInvalid, Message: fmt.Sprintf("settings: %s must be a number of seconds from more than 0 to %d", name, maxSeconds)}
		}
	}
	if v := dk.CacheDurationSeconds; v != nil {
		cfg.CacheDuration = time.Duration(*v * float64(time.Second))
	}
	if v := dk.TimeoutSeconds; v != nil {
		cfg.Timeout = time.Duration(*v * float64(time.Second))
	}
	for k := range dk.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			return SecretsConfig{}, &Error{Code: CodeInvalid, Message: "settings: header name " + quoteBadName(k) + " is not a valid header name"}
		}
	}
	return cfg, nil
}

// decodeStrict decodes a settings block, refusing unknown fields. Its
// errors name fields and types only: yaml's own messages may quote values.
func decodeStrict(n *yaml.Node, dk *dynamicKey) error {
	if n.Kind != yaml.MappingNode {
		return &Error{Code: CodeInvalid, Message: "settings: dynamic_key must be a mapping of settings"}
	}
	known := map[string]bool{"enabled": true, "endpoint_url": true, "cache_duration_seconds": true, "timeout_seconds": true, "auth_token": true, "headers": true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !known[k] {
			return &Error{Code: CodeInvalid, Message: "settings: unknown field " + quoteBadName(k) + " in dynamic_key"}
		}
	}
	if err := n.Decode(dk); err != nil {
		return &Error{Code: CodeInvalid, Message: "settings: a dynamic_key field has the wrong type (enabled: true/false; *_seconds: numbers; headers: a mapping of strings)"}
	}
	return nil
}

// LoadDynamicKeyConfig reads ParseDynamicKeyConfig's settings from a file.
func LoadDynamicKeyConfig(path string) (SecretsConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return SecretsConfig{}, &Error{Code: CodeInvalid, Message: "settings: " + err.Error()}
	}
	return ParseDynamicKeyConfig(data)
}
