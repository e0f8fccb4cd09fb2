//go:build !race

package usage_test

const raceOn = false
