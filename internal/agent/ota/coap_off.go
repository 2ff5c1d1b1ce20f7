//go:build !coap

package ota

import (
	"context"
	"errors"

	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// CoAPSupported reports whether this build has the CoAP transport. The
// default agent leaves it out: the CoAP library (and the DTLS code it
// links) costs about 1 MiB of binary and of resident memory. Build with
// -tags coap for devices on constrained links (docs/agent-ota.md).
const CoAPSupported = false

func (c *Client) newCoAPFetcher(context.Context) fetcher.Fetcher { return nil }

func (c *Client) fetchCoAP(context.Context, *Target, string, *DownloadStats, func(int64, int64)) (int64, error) {
	return 0, newErr(ReasonInvalid, "%w", errors.New("this agent was built without CoAP; build it with -tags coap"))
}
