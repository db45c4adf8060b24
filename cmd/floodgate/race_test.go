//go:build race

package main

// raceEnabled: the race detector is on (tests that measure memory skip).
const raceEnabled = true
