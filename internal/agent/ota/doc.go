// Package ota is the agent side of over-the-air updates: it keeps the
// device's view of the hub's TUF repository fresh (Client.Refresh), finds
// signed artifacts in it (Client.Lookup), downloads them resumably and
// verifies them against the signed length and hashes (Client.Download),
// and installs plain files atomically (InstallFile).
//
// Trust comes only from the root.json handed to the agent at join. All
// metadata checks — signatures and thresholds, root rotation, rollback of
// metadata versions, freeze (expired metadata), mix-and-match of snapshot
// and targets — are go-tuf's (github.com/theupdateframework/go-tuf/v2);
// this package adds what go-tuf's in-memory download cannot: a resumable
// on-disk download with a checkpoint, limits against endless and slow
// retrieval, refusal of artifact version rollback, and a stable reason
// code on every error (*Error) that a job reports as statusDetails.reason.
//
// State lives under <data>/ota/: tuf/ holds the trusted metadata go-tuf
// persists, downloads/ holds <sha256>.part checkpoints and verified
// <sha256> files, installed.json records installed artifact versions.
//
// It must not import internal/hub, Gin, gRPC, SQL drivers, mochi,
// Prometheus or cobra; cmd/outpost-agent's deps test checks that.
package ota
