package storetest

import (
	"fmt"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// testImportKeys: ImportKeys inserts new hashes across more than one
// statement's worth of rows, skips hashes stored already (in any tenant)
// or repeated within the batch, and keeps every field of what it inserts.
func testImportKeys(t *testing.T, s keys.Store) {
	createTenants(t, s, "a", "b")
	taken := key("b", "key_taken")
	createKeys(t, s, taken)
	var batch []*latchkey.Key
	for i := range 1203 {
		batch = append(batch, key("a", fmt.Sprintf("key_imp%05d", i)))
	}
	full := fullKey("a", "key_full", 1)
	batch = append(batch, full)
	dupInBatch := key("a", "key_dupinbatch")
	dupInBatch.Hash = batch[7].Hash
	stored := key("a", "key_storedhash")
	stored.Hash = taken.Hash
	batch = append(batch, dupInBatch, stored)
	var created int
	update(t, s, func(tx keys.Tx) error {
		var err error
		created, err = tx.ImportKeys(batch)
		return err
	})
	if created != 1204 {
		t.Fatalf("ImportKeys created %d, want 1204", created)
	}
	view(t, s, func(tx keys.Tx) error {
		got, err := tx.Key("a", "key_full")
		if err != nil {
			return err
		}
		checkEqual(t, "imported key_full", got, full)
		got, err = tx.KeyByHash(batch[1202].Hash)
		if err != nil {
			return err
		}
		checkEqual(t, "imported by hash", got, batch[1202])
		for _, id := range []string{"key_dupinbatch", "key_storedhash"} {
			_, err := tx.Key("a", id)
			wantCode(t, "Key "+id, err, latchkey.ENotFound)
		}
		return nil
	})
	// Again: everything is skipped.
	update(t, s, func(tx keys.Tx) error {
		var err error
		created, err = tx.ImportKeys(batch)
		return err
	})
	if created != 0 {
		t.Fatalf("re-import created %d, want 0", created)
	}
	err := s.Update(t.Context(), func(tx keys.Tx) error {
		_, err := tx.ImportKeys([]*latchkey.Key{key("nobody", "key_orphan")})
		return err
	})
	wantCode(t, "ImportKeys into a missing tenant", err, latchkey.ENotFound)
}
