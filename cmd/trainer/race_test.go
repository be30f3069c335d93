//go:build race

package main

// raceEnabled is true under the race detector, which makes a real MNIST
// epoch take tens of seconds; accuracy tests skip then.
const raceEnabled = true
