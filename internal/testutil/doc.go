// Package testutil holds helpers shared by tests: polling instead of
// sleeping, and (later) fakes such as a clock or a hub.
//
// It is imported only from _test.go files and must never be imported by
// shipped code. It depends on the standard library only.
package testutil
