package httpapi

import (
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// operator refuses actors outside the operator tenant: the keyring is the
// whole node's, not a tenant's.
func operator(a *latchkey.Actor) error {
	if a.Tenant != latchkey.OperatorTenant {
		return latchkey.Errorf(latchkey.EForbidden, "only the operator's keys manage the keyring")
	}
	return nil
}

func (s *Server) keyringStatus(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := operator(a); err != nil {
		return err
	}
	if s.keyring == nil {
		return latchkey.Errorf(latchkey.ENotFound, "this server has no keyring")
	}
	writeJSON(w, http.StatusOK, s.keyring.Status())
	return nil
}

// rotateKeyring adds a keyring term; new values are sealed with it.
func (s *Server) rotateKeyring(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := operator(a); err != nil {
		return err
	}
	if err := s.readEmptyBody(w, r); err != nil {
		return err
	}
	if s.keyring == nil {
		return latchkey.Errorf(latchkey.ENotFound, "this server has no keyring")
	}
	_, err := s.keyring.Rotate(r.Context(), func(tx latchkey.KeyringTx, term int64) error {
		return s.recordAudit(tx, a, "keyring.rotated", map[string]string{"term": strconv.FormatInt(term, 10)})
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.keyring.Status())
	return nil
}

// decodeRewrap reads POST /v1/keyring/rewrap: the path, on the server's
// host, of a 0600 file holding the new master key. The key itself never
// travels over the API (docs/secrets.md says why).
func decodeRewrap(data []byte) (string, error) {
	var b struct {
		File string `json:"new_master_key_file"`
	}
	if err := decodeJSON(data, &b); err != nil {
		return "", err
	}
	if b.File == "" || !filepath.IsAbs(b.File) || len(b.File) > 4096 {
		return "", latchkey.Errorf(latchkey.EInvalid, "new_master_key_file must be an absolute path on the server's host")
	}
	return filepath.Clean(b.File), nil
}

// rewrapKeyring wraps the keyring's terms under the master key in the
// named file.
func (s *Server) rewrapKeyring(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := operator(a); err != nil {
		return err
	}
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	path, err := decodeRewrap(body)
	if err != nil {
		return err
	}
	if s.keyring == nil {
		return latchkey.Errorf(latchkey.ENotFound, "this server has no keyring")
	}
	res, err := s.keyring.RewrapFromFile(r.Context(), path, func(tx latchkey.KeyringTx, terms int) error {
		return s.recordAudit(tx, a, "keyring.rewrapped", map[string]string{"terms": strconv.Itoa(terms)})
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// recordAudit appends the audit event of the operator's change to the
// keyring in that change's transaction tx, so the change and its record
// commit or fail together.
func (s *Server) recordAudit(tx latchkey.AuditWriter, a *latchkey.Actor, action string, details map[string]string) error {
	now := s.now().UTC().Truncate(time.Microsecond) // the store's resolution
	return tx.AppendAudit(latchkey.NewAuditEvent(a, a.Tenant, action, "", now, details))
}
