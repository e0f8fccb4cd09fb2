package httpapi

import (
	"net/http"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// keyUsage answers GET /v1/keys/{id}/usage?bucket=minute|hour|day&from&to
// (times in RFC 3339). The figures are the store's, as of the usage
// recorder's last flush.
func (s *Server) keyUsage(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	p, err := usageParams(r.URL.Query())
	if err != nil {
		return err
	}
	rep, err := s.audit.KeyUsage(r.Context(), a, r.PathValue("id"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// queryTime reads an RFC 3339 time from a query parameter; "" is zero.
func queryTime(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, latchkey.Errorf(latchkey.EInvalid, "%s must be an RFC 3339 time like 2006-01-02T15:04:05Z", name)
	}
	return t, nil
}
