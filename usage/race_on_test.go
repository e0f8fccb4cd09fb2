//go:build race

package usage_test

// raceOn says the tests run under the race detector, which makes SQLite
// (pure Go) many times slower.
const raceOn = true
