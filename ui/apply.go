package ui

import (
	"net/http"
	"strings"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/manifest"
)

// manifestLimit bounds a pasted manifest, as the API bounds POST
// /v1/apply's body.
const manifestLimit = 1 << 20

type applyForm struct {
	Manifest, Env string
	Prune         bool
}

type applyView struct {
	F     applyForm
	Error string
	// Plan is the dry run's plan (the confirmation step); Planned says
	// one was made.
	Plan    []planRow
	Planned bool
	Changes int
}

// planRow is a plan step as the pages show it.
type planRow struct {
	keys.PlanStep
}

// Noop reports whether the step changes nothing.
func (p planRow) Noop() bool { return p.Action == keys.PlanUnchanged }

func (h *Handler) applyPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.render(w, http.StatusOK, "apply", &page{Title: "Apply a manifest", S: s, Nav: "apply", Data: applyView{}})
}

// applyManifest reads a pasted app_manifest.yml as POST /v1/apply reads
// its body (package manifest). Without confirm=yes it answers the plan of
// a dry run, which changes nothing, with a form that carries the
// manifest to the real apply; with it, it applies and shows the plan
// carried out and the plaintexts of the keys it minted, once (no-store).
func (h *Handler) applyManifest(w http.ResponseWriter, r *http.Request, s *session) {
	f := applyForm{Manifest: r.PostFormValue("manifest"), Env: strings.TrimSpace(r.PostFormValue("env")), Prune: r.PostFormValue("prune") == "yes"}
	refuse := func(err error) {
		formError(h, w, r, s, "apply", "Apply a manifest", "apply", applyView{F: f}, err, func(v *applyView, m string) { v.Error = m })
	}
	if len(f.Manifest) > manifestLimit {
		refuse(latchkey.Errorf(latchkey.EInvalid, "the manifest is over %d bytes", manifestLimit))
		return
	}
	if strings.TrimSpace(f.Manifest) == "" {
		refuse(latchkey.Errorf(latchkey.EInvalid, "paste a manifest"))
		return
	}
	if f.Env != "" {
		if err := latchkey.ValidateEnvironment(f.Env); err != nil {
			refuse(err)
			return
		}
	}
	m, err := manifest.Parse("app_manifest.yml", []byte(f.Manifest), f.Env)
	if err != nil {
		refuse(err)
		return
	}
	p := keys.ApplyParams{DryRun: !confirmed(r), Prune: f.Prune, Env: f.Env}
	res, err := h.keys.ApplyManifest(r.Context(), s.actor, m, p)
	if err != nil {
		refuse(err)
		return
	}
	rows := make([]planRow, len(res.Plan))
	changes := 0
	for i, st := range res.Plan {
		rows[i] = planRow{st}
		if !rows[i].Noop() {
			changes++
		}
	}
	if p.DryRun {
		h.render(w, http.StatusOK, "apply", &page{Title: "Plan", S: s, Nav: "apply", Data: applyView{F: f, Plan: rows, Planned: true, Changes: changes}})
		return
	}
	v := onceView{Heading: "Manifest applied", Plan: rows, Back: "/ui/keys", BackText: "Go to the keys"}
	for _, k := range res.Keys {
		v.Items = append(v.Items, onceItem{Label: k.Agent + " / " + k.KeyName, Value: k.Key, KeyID: k.KeyID})
	}
	if len(v.Items) > 0 {
		v.Warning = "Copy the new keys now. Each is shown only once: Latchkey keeps only their hashes and cannot show them again."
	}
	h.showOnce(w, s, "apply", v)
}
