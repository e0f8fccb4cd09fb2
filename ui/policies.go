package ui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keys"
)

type policiesView struct {
	Policies []*latchkey.Policy
	CanWrite bool
	pager
}

// policyList lists the tenant's policies by name, presets it has not
// replaced marked.
func (h *Handler) policyList(w http.ResponseWriter, r *http.Request, s *session) {
	cursor := r.URL.Query().Get("cursor")
	ps, next, err := h.keys.ListPolicies(r.Context(), s.actor, cursor, listLimit)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v := policiesView{Policies: ps, CanWrite: s.Can(scopePoliciesWrite), pager: newPager("/ui/policies", nil, "cursor", cursor, next)}
	h.render(w, http.StatusOK, "policies", &page{Title: "Policies", S: s, Nav: "policies", Data: v})
}

// policyForm is the create and edit form: each field as typed.
type policyForm struct {
	Name, Description, Scopes, Resources, Rate, Quota, Uses, ExpiresAfter string
}

// formOf is the form showing policy p's settings.
func formOf(p *latchkey.Policy) policyForm {
	f := policyForm{Name: p.Name, Description: p.Description, Scopes: strings.Join(p.Scopes, " "),
		Resources: strings.Join(p.Resources, " "), Rate: rateList(p.RateLimits)}
	if p.Quota.IsCredit() {
		f.Uses = strconv.FormatInt(*p.Quota.Remaining, 10)
	} else {
		f.Quota = quotaText(p.Quota)
	}
	if p.ExpiresAfter > 0 {
		f.ExpiresAfter = p.ExpiresAfter.String()
	}
	return f
}

func postedPolicy(r *http.Request) policyForm {
	v := func(n string) string { return strings.TrimSpace(r.PostFormValue(n)) }
	return policyForm{Name: v("name"), Description: v("description"), Scopes: v("scopes"), Resources: v("resources"),
		Rate: v("rate"), Quota: v("quota"), Uses: v("uses"), ExpiresAfter: v("expires_after")}
}

// params turns the form into the service's parameters. On an edit
// (was set) only the fields that differ from was are set, so settings
// the form cannot show (named windows, time windows, IP allowlists) are
// kept. Errors: EInvalid.
func (f policyForm) params(was *policyForm) (keys.PolicyParams, error) {
	var p keys.PolicyParams
	changed := func(now, before string) bool { return was == nil || now != before }
	if changed(f.Description, descOf(was)) {
		p.Description = &f.Description
	}
	if was == nil || strings.Join(fieldsOf(f.Scopes), " ") != strings.Join(fieldsOf(was.Scopes), " ") {
		sc := fieldsOf(f.Scopes)
		p.Scopes = &sc
	}
	if was == nil || strings.Join(fieldsOf(f.Resources), " ") != strings.Join(fieldsOf(was.Resources), " ") {
		rs := fieldsOf(f.Resources)
		p.Resources = &rs
	}
	if was == nil || f.Rate != was.Rate {
		rl := []latchkey.RateLimit{}
		if f.Rate != "" {
			var err error
			if rl, err = latchkey.ParseRates(f.Rate); err != nil {
				return p, err
			}
		}
		p.RateLimits = &rl
	}
	if f.Quota != "" && f.Uses != "" {
		return p, latchkey.Errorf(latchkey.EInvalid, "set a quota or a number of uses, not both")
	}
	if was == nil || f.Quota != was.Quota || f.Uses != was.Uses {
		switch {
		case f.Uses != "":
			n, err := strconv.ParseInt(f.Uses, 10, 64)
			if err != nil {
				return p, latchkey.Errorf(latchkey.EInvalid, "uses must be a whole number")
			}
			p.Uses = &n
		case f.Quota != "":
			if !strings.Contains(f.Quota, "/") {
				return p, latchkey.Errorf(latchkey.EInvalid, "quota: use LIMIT/PERIOD such as 10000/30d or 500/monthly (a credit balance goes in uses)")
			}
			q, err := latchkey.ParseQuotaFlag(f.Quota)
			if err != nil {
				return p, err
			}
			p.Quota = q
		case was != nil:
			p.ClearQuota = true
		}
	}
	if was == nil || f.ExpiresAfter != was.ExpiresAfter {
		var d time.Duration
		if f.ExpiresAfter != "" {
			var err error
			if d, err = latchkey.ParseDuration(f.ExpiresAfter); err != nil {
				return p, err
			}
		}
		p.ExpiresAfter = &d
	}
	return p, nil
}

func descOf(f *policyForm) string {
	if f == nil {
		return ""
	}
	return f.Description
}

type policyView struct {
	Policy   *latchkey.Policy
	New      bool
	CanWrite bool
	F        policyForm
	Error    string
}

func (h *Handler) newPolicyPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.render(w, http.StatusOK, "policy", &page{Title: "New policy", S: s, Nav: "policies", Data: policyView{New: true, CanWrite: true}})
}

// createPolicy creates a policy from the form and goes to its page; a
// form the service refuses comes back with the reason.
func (h *Handler) createPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	f := postedPolicy(r)
	p, err := f.params(nil)
	if err == nil {
		_, err = h.keys.CreatePolicy(r.Context(), s.actor, f.Name, p)
	}
	if err != nil {
		formError(h, w, r, s, "policy", "New policy", "policies", policyView{New: true, CanWrite: true, F: f}, err, func(v *policyView, m string) { v.Error = m })
		return
	}
	http.Redirect(w, r, "/ui/policies/"+url.PathEscape(f.Name), http.StatusSeeOther)
}

// formError answers a form the service refused: EInvalid, EForbidden,
// ENotFound and EConflict come back on the form with their message and
// status; anything else is the error page.
func formError[V any](h *Handler, w http.ResponseWriter, r *http.Request, s *session, name, title, nav string, v V, err error, set func(*V, string)) {
	code := latchkey.ErrorCode(err)
	if code != latchkey.EInvalid && code != latchkey.EForbidden && code != latchkey.ENotFound && code != latchkey.EConflict {
		h.fail(w, r, s, err)
		return
	}
	set(&v, latchkey.ErrorMessage(err))
	h.render(w, statusOf(code), name, &page{Title: title, S: s, Nav: nav, Data: v})
}

// policyDetail shows a policy's settings, with the edit form and the
// delete button when the key holds policies:write.
func (h *Handler) policyDetail(w http.ResponseWriter, r *http.Request, s *session) {
	pol, err := h.keys.GetPolicy(r.Context(), s.actor, r.PathValue("name"))
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v := policyView{Policy: pol, CanWrite: s.Can(scopePoliciesWrite), F: formOf(pol)}
	h.render(w, http.StatusOK, "policy", &page{Title: "Policy " + pol.Name, S: s, Nav: "policies", Data: v})
}

// editPolicy changes the fields of the form that differ from the
// policy's settings now.
func (h *Handler) editPolicy(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	name := r.PathValue("name")
	pol, err := h.keys.GetPolicy(ctx, s.actor, name)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	was := formOf(pol)
	f := postedPolicy(r)
	f.Name = name
	p, err := f.params(&was)
	if err == nil {
		_, err = h.keys.UpdatePolicy(ctx, s.actor, name, p)
	}
	if err != nil {
		formError(h, w, r, s, "policy", "Policy "+name, "policies", policyView{Policy: pol, CanWrite: true, F: f}, err, func(v *policyView, m string) { v.Error = m })
		return
	}
	http.Redirect(w, r, "/ui/policies/"+url.PathEscape(name), http.StatusSeeOther)
}

// deletePolicy deletes a policy after a confirmation.
func (h *Handler) deletePolicy(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	back := "/ui/policies/" + url.PathEscape(name)
	if !confirmed(r) {
		h.confirm(w, r, s, confirmView{Heading: "Delete policy", Question: "Delete policy " + name + "? Keys that name it lose its settings (a preset's name falls back to the preset).",
			Button: "Delete", Action: back + "/delete", Back: back})
		return
	}
	if err := h.keys.DeletePolicy(r.Context(), s.actor, name); err != nil {
		h.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, "/ui/policies", http.StatusSeeOther)
}

type ownersView struct {
	Owners []*latchkey.Owner
	pager
}

// ownerList lists the owner records of the tenant (owners with shared
// limits), with a field to open any owner's page.
func (h *Handler) ownerList(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	if id := strings.TrimSpace(q.Get("id")); id != "" {
		http.Redirect(w, r, "/ui/owners/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	cursor := q.Get("cursor")
	os, next, err := h.keys.ListOwners(r.Context(), s.actor, cursor, listLimit)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	v := ownersView{Owners: os, pager: newPager("/ui/owners", nil, "cursor", cursor, next)}
	h.render(w, http.StatusOK, "owners", &page{Title: "Owners", S: s, Nav: "owners", Data: v})
}

type ownerForm struct{ Rate, Quota string }

type ownerView struct {
	ID       string
	Owner    *latchkey.Owner // nil: no record
	CanWrite bool
	F        ownerForm
	Error    string
	HasUsage bool
	Day      chart
	Month    chart
	Keys     []audit.OwnerKeyUsage
	Total    int64
	Trunc    bool
}

// ownerDetail shows an owner's record (its shared limits, if it has
// one), its keys' usage over 24 hours and 30 days drawn as the key
// page's charts, and the form that sets its limits.
func (h *Handler) ownerDetail(w http.ResponseWriter, r *http.Request, s *session) {
	v, err := h.ownerPage(r, s)
	if err != nil {
		h.fail(w, r, s, err)
		return
	}
	h.render(w, http.StatusOK, "owner", &page{Title: "Owner " + v.ID, S: s, Nav: "owners", Data: v})
}

func (h *Handler) ownerPage(r *http.Request, s *session) (ownerView, error) {
	ctx := r.Context()
	id := r.PathValue("id")
	if err := latchkey.ValidateText("owner", id, latchkey.MaxNameLen, true); err != nil {
		return ownerView{}, err
	}
	v := ownerView{ID: id, CanWrite: s.canWrite()}
	o, err := h.keys.GetOwner(ctx, s.actor, id)
	switch {
	case err == nil:
		v.Owner = o
		v.F = ownerForm{Rate: rateList(o.RateLimits), Quota: quotaText(o.Quota)}
	case latchkey.ErrorCode(err) != latchkey.ENotFound:
		return v, err
	}
	if h.audit == nil {
		return v, nil
	}
	now := h.now()
	day, err := h.audit.OwnerUsage(ctx, s.actor, id, audit.UsageParams{Bucket: "hour", From: now.Add(-23 * time.Hour)})
	if err != nil {
		return v, err
	}
	month, err := h.audit.OwnerUsage(ctx, s.actor, id, audit.UsageParams{Bucket: "day", From: now.Add(-29 * 24 * time.Hour)})
	if err != nil {
		return v, err
	}
	v.HasUsage = true
	v.Day = newChart("Last 24 hours, by hour", "hour", &audit.UsageReport{Series: day.Series}, "Jan 2 15:00 UTC")
	v.Month = newChart("Last 30 days, by day", "day", &audit.UsageReport{Series: month.Series}, "Jan 2")
	v.Keys, v.Trunc = month.Keys, month.Truncated
	return v, nil
}

// putOwner sets an owner's shared limits (rate windows and a periodic
// quota; empty fields: none) from the form.
func (h *Handler) putOwner(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	f := ownerForm{Rate: strings.TrimSpace(r.PostFormValue("rate")), Quota: strings.TrimSpace(r.PostFormValue("quota"))}
	var p keys.OwnerParams
	var err error
	if f.Rate != "" {
		p.RateLimits, err = latchkey.ParseRates(f.Rate)
	}
	if err == nil && f.Quota != "" {
		if !strings.Contains(f.Quota, "/") {
			err = latchkey.Errorf(latchkey.EInvalid, "an owner's quota is periodic: use LIMIT/PERIOD such as 10000/30d or 500/monthly")
		} else {
			p.Quota, err = latchkey.ParseQuotaFlag(f.Quota)
		}
	}
	if err == nil {
		var o *latchkey.Owner
		if o, err = h.keys.GetOwner(r.Context(), s.actor, id); err == nil {
			p.Meta = o.Meta // the form sets limits; the record's metadata stays
		} else if latchkey.ErrorCode(err) == latchkey.ENotFound {
			err = nil
		}
	}
	if err == nil {
		_, err = h.keys.PutOwner(r.Context(), s.actor, id, p)
	}
	if err != nil {
		v, perr := h.ownerPage(r, s)
		if perr != nil {
			h.fail(w, r, s, perr)
			return
		}
		v.F = f
		formError(h, w, r, s, "owner", "Owner "+id, "owners", v, err, func(v *ownerView, m string) { v.Error = m })
		return
	}
	http.Redirect(w, r, "/ui/owners/"+url.PathEscape(id), http.StatusSeeOther)
}

// deleteOwner deletes an owner's record (its keys stay; they lose the
// shared limits), after a confirmation.
func (h *Handler) deleteOwner(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	back := "/ui/owners/" + url.PathEscape(id)
	if !confirmed(r) {
		h.confirm(w, r, s, confirmView{Heading: "Delete owner record", Question: "Delete the record of owner " + id + "? Its keys stay, without the shared limits.",
			Button: "Delete record", Action: back + "/delete", Back: back})
		return
	}
	if err := h.keys.DeleteOwner(r.Context(), s.actor, id); err != nil {
		h.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
