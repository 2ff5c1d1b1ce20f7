package shadow

import (
	"context"
	"encoding/json"

	"github.com/outpost-edge/outpost/protocol"
)

// HandleMQTT answers one message on a shadow topic, the MQTT adapter of the
// Service: a request on …/update, …/get or …/delete is answered on its
// …/accepted or …/rejected topic. Messages on response topics (including
// the ones this service publishes) and on other topics are ignored. The
// broker's topic ACL guarantees that only the device itself (or the hub)
// publishes under $aws/things/{id}/, so the id in the topic is trusted.
//
// HandleMQTT publishes through the Publisher and so must not be called
// while a shadow lock is held; the broker calls it from the publishing
// client's goroutine, which keeps each client's requests in order.
func (s *Service) HandleMQTT(ctx context.Context, topic string, payload []byte) {
	p, err := protocol.ParseShadowTopic(topic)
	if err != nil || !p.IsRequest() {
		return
	}
	if s.pub == nil {
		return
	}
	switch p.Op {
	case protocol.ShadowOpUpdate:
		req, err := ParseRequest(payload)
		if err != nil {
			s.count(p.Op, err)
			s.rejectMQTT(p, req.ClientToken, err)
			return
		}
		res, err := s.Update(ctx, p.DeviceID, p.Name, req)
		if err != nil {
			s.rejectMQTT(p, req.ClientToken, err)
			return
		}
		s.publish(protocol.ShadowTopic(p.DeviceID, p.Name, p.Op, protocol.ShadowAccepted), res.Accepted)
	case protocol.ShadowOpGet:
		tok := clientToken(payload)
		doc, err := s.get(ctx, p.DeviceID, p.Name, tok)
		if err != nil {
			s.count(p.Op, err)
			s.rejectMQTT(p, tok, err)
			return
		}
		s.publish(protocol.ShadowTopic(p.DeviceID, p.Name, p.Op, protocol.ShadowAccepted), doc)
	case protocol.ShadowOpDelete:
		tok := clientToken(payload)
		v, err := s.Delete(ctx, p.DeviceID, p.Name)
		if err != nil {
			s.rejectMQTT(p, tok, err)
			return
		}
		s.publish(protocol.ShadowTopic(p.DeviceID, p.Name, p.Op, protocol.ShadowAccepted),
			protocol.ShadowDeleted{Version: v, Timestamp: s.now().Unix(), ClientToken: tok})
	}
}

// rejectMQTT publishes the error document of a refused request.
func (s *Service) rejectMQTT(p protocol.ShadowTopicParts, clientToken string, err error) {
	code, msg := codeOf(err)
	if code >= 500 {
		s.logger.Error("shadow request failed", "device", p.DeviceID, "shadow", p.Name, "op", p.Op, "err", err)
	} else {
		s.logger.Debug("shadow request rejected", "device", p.DeviceID, "shadow", p.Name, "op", p.Op, "code", code, "message", msg)
	}
	s.publish(protocol.ShadowTopic(p.DeviceID, p.Name, p.Op, protocol.ShadowRejected), protocol.ShadowError{
		Code: code, Message: msg, Timestamp: s.now().Unix(), ClientToken: clientToken,
	})
}

// clientToken returns the clientToken of a get or delete request. Their
// payload is optional and otherwise ignored (as in AWS IoT): an empty or
// unreadable payload, or an over-long token, yields no token.
func clientToken(payload []byte) string {
	if len(payload) == 0 || len(payload) > protocol.MaxShadowRequestBytes {
		return ""
	}
	var req struct {
		ClientToken string `json:"clientToken"`
	}
	if json.Unmarshal(payload, &req) != nil || len(req.ClientToken) > protocol.MaxClientTokenLen {
		return ""
	}
	return req.ClientToken
}
