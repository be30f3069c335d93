//go:build race

package native

// raceOn shortens the exhaustive sweeps under the race detector, which
// slows the float64 reference tenfold; TestConcurrent still runs whole.
const raceOn = true
