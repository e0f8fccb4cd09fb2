package ui

import (
	"net/http"

	"github.com/latchkeyhq/latchkey"
)

// The portal: a key holder signed in with its own key (scope
// self:manage) sees and manages only the keys of its own owner.
//
// It calls keys.Service with the signed-in key's own actor, which holds
// no keys:read or keys:write. That is safe because the service checks
// only the actor's tenant on these calls (the route's scope is its
// caller's to check, as httpapi checks it), and the portal checks the
// rest itself before every call: it lists with the owner filter fixed to
// the key's own owner (never empty: such a key cannot use the portal),
// and it reads a key before showing or changing it and answers a key of
// another owner exactly as a missing one (404), so a user editing a URL
// learns nothing. Rotation also needs GrantableBy: a self:manage key
// cannot obtain a successor of a key of its owner holding admin scopes
// it lacks itself. The changes are audited with the portal key as actor.
// The owner is checked a moment before the change, not in its
// transaction: only an admin can move a key to another owner, and a key
// that moved within that moment had been the user's a moment before.

func (h *Handler) portalList(w http.ResponseWriter, r *http.Request, s *session) {
	h.listKeys(w, r, s, "/ui/portal/keys", s.owner)
}

// ownKey reads key id for the portal: ENotFound unless it is a key of
// the session's owner.
func (h *Handler) ownKey(r *http.Request, s *session, id string) (*latchkey.Key, error) {
	k, err := h.keys.GetKey(r.Context(), s.actor, id)
	if err != nil {
		return nil, err
	}
	if s.owner == "" || k.Owner != s.owner {
		return nil, latchkey.KeyNotFound(id)
	}
	return k, nil
}

func (h *Handler) portalKey(w http.ResponseWriter, r *http.Request, s *session) {
	k, err := h.ownKey(r, s, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v, err := h.keyPage(r, s, k, "/ui/portal/keys", true)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	h.render(w, http.StatusOK, "key", &page{Title: k.Name, S: s, Nav: "portal", Data: v})
}

// portalAction rotates (with a grace period) or revokes a key of the
// session's owner.
func (h *Handler) portalAction(w http.ResponseWriter, r *http.Request, s *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	k, err := h.ownKey(r, s, id)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	switch action {
	case "rotate":
		if bad, ok := latchkey.GrantableBy(s.actor.Scopes, k.Scopes); !ok {
			h.fail(w, r, s, latchkey.Errorf(latchkey.EForbidden, "the key holds %s, which your key does not: an admin must rotate it", bad))
			return
		}
	case "revoke":
	default:
		h.fail(w, r, s, errPageNotFound)
		return
	}
	h.act(w, r, s, "/ui/portal/keys", id, action)
}
