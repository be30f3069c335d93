//go:build race

package example

// raceEnabled shrinks the MNIST test under the race detector, which slows
// decoding some tenfold.
const raceEnabled = true
