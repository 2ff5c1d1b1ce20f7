// Package ota is the hub's TUF repository (The Update Framework, via
// github.com/theupdateframework/go-tuf/v2): it keeps the signed metadata of
// every role, the online keys of the targets, snapshot and timestamp roles,
// and the artifact blobs, all under <data dir>/ota/.
//
// The root key never reaches the hub: operators sign root metadata offline
// with `outpost keys` and upload it; the hub checks the chain of trust before
// it accepts a new root. The hub signs targets, snapshot and timestamp itself
// and re-signs timestamp (and snapshot) on a timer so that devices never see
// expired metadata from a live hub.
//
// The package must not import the HTTP layer (httpapi), the broker or the
// store: handlers call it, it calls nothing but the file system.
package ota
