package protocol

import (
	"strings"
)

// Device shadow: the AWS IoT Device Shadow topic layout and documents
// (docs/shadow.md). A device's classic shadow lives under
// "$aws/things/{id}/shadow/", a named shadow under
// "$aws/things/{id}/shadow/name/{name}/".

// Operations a device requests by publishing to ShadowTopic(id, name, op, "").
const (
	ShadowOpUpdate = "update"
	ShadowOpGet    = "get"
	ShadowOpDelete = "delete"
)

// Suffixes of the topics the hub answers on: ShadowTopic(id, name, op, suffix).
const (
	ShadowAccepted  = "accepted"
	ShadowRejected  = "rejected"
	ShadowDelta     = "delta"     // update only
	ShadowDocuments = "documents" // update only
)

// ShadowFilter matches every shadow topic of every device; the hub
// subscribes to it and ignores the response topics it publishes itself.
const ShadowFilter = "$aws/things/+/shadow/#"

// Limits on shadow requests and documents.
const (
	// MaxShadowStateBytes bounds a stored shadow: the JSON encodings of its
	// desired and reported sections together (metadata excluded).
	MaxShadowStateBytes = 64 << 10
	// MaxShadowRequestBytes bounds the payload of one shadow request (MQTT
	// or REST).
	MaxShadowRequestBytes = 128 << 10
	// MaxShadowDepth is the deepest nesting of objects and arrays inside
	// desired or reported: the keys directly under desired are level 1.
	MaxShadowDepth = 6
	// MaxShadowNameLen is the longest named-shadow name, in bytes.
	MaxShadowNameLen = 64
	// MaxClientTokenLen is the longest clientToken, in bytes.
	MaxClientTokenLen = 64
)

const (
	thingsPrefix = "$aws/things/"
	shadowPart   = "/shadow/"
)

// ShadowTopicPrefix is the topic prefix of a device's shadow: the classic
// shadow when name is empty, else the named shadow.
func ShadowTopicPrefix(deviceID, name string) string {
	if name == "" {
		return thingsPrefix + deviceID + "/shadow"
	}
	return thingsPrefix + deviceID + "/shadow/name/" + name
}

// ShadowTopic is the topic of a shadow operation (suffix "") or of one of
// its responses (suffix ShadowAccepted, ShadowRejected, …).
func ShadowTopic(deviceID, name, op, suffix string) string {
	t := ShadowTopicPrefix(deviceID, name) + "/" + op
	if suffix != "" {
		t += "/" + suffix
	}
	return t
}

// ShadowTopicParts is a parsed shadow topic.
type ShadowTopicParts struct {
	DeviceID string
	Name     string // empty: the classic shadow
	Op       string // ShadowOpUpdate, ShadowOpGet or ShadowOpDelete
	Suffix   string // empty for a request; ShadowAccepted, … for a response
}

// IsRequest reports whether the topic is one a client publishes a request to.
func (p ShadowTopicParts) IsRequest() bool { return p.Suffix == "" }

// ParseShadowTopic splits a shadow topic into its parts. It fails for any
// topic that is not a shadow request or response topic of a valid device
// id and shadow name.
func ParseShadowTopic(topic string) (ShadowTopicParts, error) {
	rest, ok := strings.CutPrefix(topic, thingsPrefix)
	if !ok {
		return ShadowTopicParts{}, errorf(CodeBadTopic, "topic %q is not under %q", topic, thingsPrefix)
	}
	id, rest, ok := strings.Cut(rest, shadowPart)
	if !ok {
		return ShadowTopicParts{}, errorf(CodeBadTopic, "topic %q is not a shadow topic", topic)
	}
	if err := ValidDeviceID(id); err != nil {
		return ShadowTopicParts{}, err
	}
	p := ShadowTopicParts{DeviceID: id}
	parts := strings.Split(rest, "/")
	if len(parts) >= 3 && parts[0] == "name" {
		p.Name = parts[1]
		if err := ValidShadowName(p.Name); err != nil {
			return ShadowTopicParts{}, err
		}
		parts = parts[2:]
	}
	switch len(parts) {
	case 1:
		p.Op = parts[0]
	case 2:
		p.Op, p.Suffix = parts[0], parts[1]
	default:
		return ShadowTopicParts{}, errorf(CodeBadTopic, "topic %q is not a shadow operation topic", topic)
	}
	switch p.Op {
	case ShadowOpUpdate, ShadowOpGet, ShadowOpDelete:
	default:
		return ShadowTopicParts{}, errorf(CodeBadTopic, "topic %q: unknown shadow operation %q", topic, p.Op)
	}
	switch p.Suffix {
	case "", ShadowAccepted, ShadowRejected:
	case ShadowDelta, ShadowDocuments:
		if p.Op != ShadowOpUpdate {
			return ShadowTopicParts{}, errorf(CodeBadTopic, "topic %q: %s exists only for update", topic, p.Suffix)
		}
	default:
		return ShadowTopicParts{}, errorf(CodeBadTopic, "topic %q: unknown shadow response %q", topic, p.Suffix)
	}
	return p, nil
}

// IsShadowResponseTopic reports whether topic is one the hub publishes
// shadow responses on (accepted, rejected, delta, documents). Devices may
// subscribe to these but not publish to them.
func IsShadowResponseTopic(topic string) bool {
	p, err := ParseShadowTopic(topic)
	return err == nil && !p.IsRequest()
}

// ValidShadowName reports whether name is a usable named-shadow name: 1 to
// MaxShadowNameLen bytes of ASCII letters, digits, '-', '_' and ':' (the
// AWS IoT rule). The classic shadow has no name.
func ValidShadowName(name string) error {
	if len(name) == 0 || len(name) > MaxShadowNameLen {
		return errorf(CodeBadName, "shadow name must be 1 to %d characters, got %d", MaxShadowNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':') {
			return errorf(CodeBadName, "shadow name %q has %q at byte %d; allowed are letters, digits, '-', '_' and ':'", name, c, i)
		}
	}
	return nil
}

// ShadowDocument is a shadow document as the hub sends it: the body of
// get/accepted and update/accepted, each half of update/documents, and of
// the REST API's shadow responses.
//
// In get/accepted and REST responses State holds "desired", "reported" and
// "delta" (each only when not empty) and Metadata holds "desired" and
// "reported" with a {"timestamp": seconds} object per leaf. In
// update/accepted both echo the request's state. Numbers decode as float64
// unless the caller decodes with json.Decoder.UseNumber.
type ShadowDocument struct {
	State       map[string]any `json:"state"`
	Metadata    map[string]any `json:"metadata"`
	Version     int64          `json:"version"`
	Timestamp   int64          `json:"timestamp,omitempty"`
	ClientToken string         `json:"clientToken,omitempty"`
}

// ShadowDeltaMessage is the body of update/delta: the desired values that
// differ from reported (all of them, not just those the update touched),
// their metadata, and the version that produced them.
type ShadowDeltaMessage struct {
	State       map[string]any `json:"state"`
	Metadata    map[string]any `json:"metadata"`
	Version     int64          `json:"version"`
	Timestamp   int64          `json:"timestamp"`
	ClientToken string         `json:"clientToken,omitempty"`
}

// ShadowDocumentsMessage is the body of update/documents. Previous is nil
// when the update created the shadow.
type ShadowDocumentsMessage struct {
	Previous    *ShadowDocument `json:"previous,omitempty"`
	Current     ShadowDocument  `json:"current"`
	Timestamp   int64           `json:"timestamp"`
	ClientToken string          `json:"clientToken,omitempty"`
}

// ShadowDeleted is the body of delete/accepted.
type ShadowDeleted struct {
	Version     int64  `json:"version"`
	Timestamp   int64  `json:"timestamp"`
	ClientToken string `json:"clientToken,omitempty"`
}

// ShadowError is the body of every …/rejected message. Code is an HTTP
// status (400, 404, 409, 413, 415, 500), Message the AWS-compatible text.
type ShadowError struct {
	Code        int    `json:"code"`
	Message     string `json:"message"`
	Timestamp   int64  `json:"timestamp"`
	ClientToken string `json:"clientToken,omitempty"`
}
