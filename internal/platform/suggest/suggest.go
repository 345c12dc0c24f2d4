// Package suggest finds the known name a mistyped one was probably meant to be, so an error
// about an unknown setting, column or reason can name the likely one.
package suggest

import "strings"

// Nearest returns the candidate closest to name and its distance: the number of single-letter
// insertions, deletions, substitutions and swaps of two neighbours that turn one into the
// other, ignoring case. With no candidates it returns "" and -1. Each caller decides how
// close counts as "probably meant", since a wrong guess costs differently in each place.
func Nearest(name string, candidates []string) (string, int) {
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := Distance(name, c); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best, bestDist
}

// Distance is the optimal string alignment distance between a and b, ignoring case: a swap
// of two neighbouring letters (ULR for URL) counts as one edit, as a typist makes it.
func Distance(a, b string) int {
	ra, rb := []rune(strings.ToLower(a)), []rune(strings.ToLower(b))
	// d[i][j] is the distance between the first i runes of a and the first j of b.
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
