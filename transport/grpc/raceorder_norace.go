//go:build !race

package grpctransport

// raceOrder does nothing outside race builds (see raceorder_race.go).
func raceOrder() {}
