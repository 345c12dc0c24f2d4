//go:build race

package main

// raceBuild says the tests run under the race detector, so the binary they drive is built
// with it too: it then catches races in the real process, and its packages come from the same
// build cache entries as the tests' own.
const raceBuild = true
