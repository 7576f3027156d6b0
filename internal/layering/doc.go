// Package layering holds only tests: they check the dependency rules of the repository's layout
// (see its test file).
package layering
