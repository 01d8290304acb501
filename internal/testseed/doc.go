// Package testseed gives randomized tests their seeds from the environment,
// so that CI runs a few and a person can run many, or replay one.
//
// It is for tests only (it takes a testing.TB and fails it on a malformed
// variable) and imports only the standard library. FromEnv reads the
// environment and keeps no state, so parallel tests may call it.
package testseed
