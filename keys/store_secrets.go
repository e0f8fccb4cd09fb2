package keys

// SecretStore keeps the keyring's wrapped data keys and the brokered
// secrets sealed with them.
type SecretStore interface {
}

// Sealer encrypts small secrets for storage: webhook signing secrets and
// brokered provider keys. aad binds a ciphertext to where it is stored
// (tenant, name, version…), so a ciphertext copied to another row does not
// open. The keyring (package keyring) implements it.
type Sealer interface {
	Seal(aad, plaintext []byte) ([]byte, error)
	Open(aad, ciphertext []byte) ([]byte, error)
}
