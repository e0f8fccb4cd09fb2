package ui

import (
	"net/http"
	"time"

	"github.com/latchkeyhq/latchkey"
)

var errNoSecrets = latchkey.Errorf(latchkey.ENotFound, "this server has no secret service")

// secretRow and versionRow are all the secret pages ever see of a secret:
// copied field by field from the service's answers, so no value can reach
// a template even if the service one day returned one.
type secretRow struct {
	Name               string
	Version, Versions  int64
	CreatedAt, Updated time.Time
}

type versionRow struct {
	Version   int64
	ExpiresIn int64
	CreatedAt time.Time
	CreatedBy string
}

type secretsView struct {
	Secrets []secretRow
	pager
}

// secretList lists the secrets the signed-in key may read: names,
// versions and dates, never values.
func (h *Handler) secretList(w http.ResponseWriter, r *http.Request, s *session) {
	if h.secrets == nil {
		h.fail(w, r, s, errNoSecrets)
		return
	}
	cursor := r.URL.Query().Get("cursor")
	list, next, err := h.secrets.ListSecrets(r.Context(), s.actor, cursor, listLimit)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v := secretsView{pager: newPager("/ui/secrets", nil, "cursor", cursor, next)}
	for _, si := range list {
		v.Secrets = append(v.Secrets, secretRow{Name: si.Name, Version: si.Version, Versions: si.Versions, CreatedAt: si.CreatedAt, Updated: si.UpdatedAt})
	}
	h.render(w, http.StatusOK, "secrets", &page{Title: "Secrets", S: s, Nav: "secrets", Data: v})
}

type secretVersionsView struct {
	Name     string
	Versions []versionRow
}

// secretDetail lists a secret's kept versions, newest first, without
// their values.
func (h *Handler) secretDetail(w http.ResponseWriter, r *http.Request, s *session) {
	if h.secrets == nil {
		h.fail(w, r, s, errNoSecrets)
		return
	}
	name := r.PathValue("name")
	vs, err := h.secrets.SecretVersions(r.Context(), s.actor, name)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v := secretVersionsView{Name: name}
	for _, sv := range vs {
		v.Versions = append(v.Versions, versionRow{Version: sv.Version, ExpiresIn: sv.ExpiresIn, CreatedAt: sv.CreatedAt, CreatedBy: sv.CreatedBy})
	}
	h.render(w, http.StatusOK, "secretinfo", &page{Title: "Secret " + name, S: s, Nav: "secrets", Data: v})
}
