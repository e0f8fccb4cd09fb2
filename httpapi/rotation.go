package httpapi

import (
	"net/http"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// rotationBody is PUT /v1/keys/{id}/rotation's body.
type rotationBody struct {
	Interval    latchkey.Duration  `json:"interval"`
	GracePeriod *latchkey.Duration `json:"grace_period"`
	Secret      string             `json:"secret_name"`
	Reader      string             `json:"reader"`
}

// rotationView is a rotation as the API shows it.
type rotationView struct {
	ID          string            `json:"id"`
	KeyID       string            `json:"key_id"`
	Interval    latchkey.Duration `json:"interval"`
	GracePeriod latchkey.Duration `json:"grace_period"`
	Secret      string            `json:"secret_name"`
	Reader      string            `json:"reader"`
	NextAt      time.Time         `json:"next_at"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

func viewRotation(r *latchkey.Rotation) rotationView {
	return rotationView{ID: r.ID, KeyID: r.KeyID, Interval: r.Interval, GracePeriod: r.Grace, Secret: r.Secret,
		Reader: r.Reader, NextAt: r.NextAt, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// putRotation is PUT /v1/keys/{id}/rotation: rotate the key every
// interval, sealing each successor as a secret for the reader key.
func (s *Server) putRotation(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	var b rotationBody
	if err := decodeJSON(body, &b); err != nil {
		return err
	}
	p := keys.RotationParams{Interval: time.Duration(b.Interval), Secret: b.Secret, Reader: b.Reader}
	if b.GracePeriod != nil {
		g := time.Duration(*b.GracePeriod)
		p.Grace = &g
	}
	rot, err := s.svc.SetRotation(r.Context(), a, r.PathValue("id"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewRotation(rot))
	return nil
}

// getRotation is GET /v1/keys/{id}/rotation.
func (s *Server) getRotation(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	rot, err := s.svc.GetRotation(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewRotation(rot))
	return nil
}

// deleteRotation is DELETE /v1/keys/{id}/rotation.
func (s *Server) deleteRotation(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.svc.DeleteRotation(r.Context(), a, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
