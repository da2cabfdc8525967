//go:build !race

package es256

const raceEnabled = false
