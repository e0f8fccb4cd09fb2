package httpapi

import (
	"net/http"
	"net/url"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/manifest"
)

// manifestLimit bounds an app manifest's body (manifest.Parse refuses
// more too).
const manifestLimit = 1 << 20

// applyManifest is POST /v1/apply: an app_manifest.yml (YAML or JSON) in
// the body; ?dry_run=true answers the plan and changes nothing,
// ?env=production applies that environment's keys, ?prune=true revokes
// the app's keys the manifest no longer declares, ?file= names the file in
// error messages (default app_manifest.yml).
func (s *Server) applyManifest(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	var p keys.ApplyParams
	var err error
	if p.DryRun, err = queryFlag(q, "dry_run"); err != nil {
		return err
	}
	if p.Prune, err = queryFlag(q, "prune"); err != nil {
		return err
	}
	p.Env = q.Get("env")
	if p.Env != "" {
		if err := latchkey.ValidateEnvironment(p.Env); err != nil {
			return err
		}
	}
	file := q.Get("file")
	if file == "" {
		file = "app_manifest.yml"
	}
	if err := latchkey.ValidateText("file", file, latchkey.MaxNameLen, true); err != nil {
		return err
	}
	body, err := readBody(w, r, min(s.maxBody, manifestLimit))
	if err != nil {
		return err
	}
	m, err := manifest.Parse(file, body, p.Env)
	if err != nil {
		return err
	}
	res, err := s.svc.ApplyManifest(r.Context(), a, m, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// queryFlag reads a boolean query parameter: absent or "false" is false,
// "true" is true, anything else EInvalid.
func queryFlag(q url.Values, name string) (bool, error) {
	switch q.Get(name) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, latchkey.Errorf(latchkey.EInvalid, "%s must be true or false", name)
}
