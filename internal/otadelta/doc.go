// Package otadelta builds and applies OTA delta patches: a zstd frame of
// the new artifact compressed with the old artifact as a raw dictionary
// (github.com/klauspost/compress/zstd). The hub encodes (Encode), the agent
// decodes (Decode) under a memory cap; both import this package so the
// format has one definition.
//
// It must stay tiny: stdlib and klauspost/compress only, since the agent
// imports it. It knows nothing about TUF, targets or files on disk.
package otadelta
