//go:build race

package es256

// raceEnabled scales down the million-signature test under the race
// detector, which slows the pure-Go arithmetic several times over.
const raceEnabled = true
