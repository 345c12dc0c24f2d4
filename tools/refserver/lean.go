package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// R3: what a durable, validating intake costs when written plainly and leanly. The body is
// decoded by encoding/json into structs holding only the members dvrelay reads (attribute values
// stay raw), the same checks as dvrelay's are made by hand (GUIDs, logical and message names,
// typed column values, dates, the step's stage and mode), the canonical event is written with
// json.Marshal, and that is what the group commit appends.

type leanContext struct {
	CorrelationID      *string        `json:"CorrelationId"`
	Depth              *json.Number   `json:"Depth"`
	InitiatingUserID   *string        `json:"InitiatingUserId"`
	InputParameters    []leanKV       `json:"InputParameters"`
	IsInTransaction    *bool          `json:"IsInTransaction"`
	MessageName        string         `json:"MessageName"`
	Mode               *json.Number   `json:"Mode"`
	OperationCreatedOn string         `json:"OperationCreatedOn"`
	OperationID        *string        `json:"OperationId"`
	OrganizationID     *string        `json:"OrganizationId"`
	OutputParameters   []leanKV       `json:"OutputParameters"`
	OwningExtension    *leanReference `json:"OwningExtension"`
	PostEntityImages   []leanKV       `json:"PostEntityImages"`
	PrimaryEntityID    *string        `json:"PrimaryEntityId"`
	PrimaryEntityName  *string        `json:"PrimaryEntityName"`
	RequestID          *string        `json:"RequestId"`
	Stage              *json.Number   `json:"Stage"`
	UserID             *string        `json:"UserId"`
}

type leanKV struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

type leanEntity struct {
	Attributes  []leanKV `json:"Attributes"`
	ID          string   `json:"Id"`
	LogicalName string   `json:"LogicalName"`
}

type leanReference struct {
	Type        string       `json:"__type"`
	ID          string       `json:"Id"`
	LogicalName string       `json:"LogicalName"`
	Name        *string      `json:"Name"`
	Value       *json.Number `json:"Value"`
}

type leanLookup struct {
	ID          string  `json:"id"`
	LogicalName string  `json:"logicalName"`
	Name        *string `json:"name"`
}

type leanEvent struct {
	SchemaVersion   string                     `json:"SchemaVersion"`
	EventID         string                     `json:"EventId"`
	CorrelationID   string                     `json:"CorrelationId"`
	EventName       string                     `json:"EventName"`
	Entity          string                     `json:"Entity"`
	Message         string                     `json:"Message"`
	RecordID        string                     `json:"RecordId,omitempty"`
	ChangedFields   []string                   `json:"ChangedFields"`
	Attributes      map[string]json.RawMessage `json:"Attributes,omitempty"`
	TriggeredBy     string                     `json:"TriggeredBy"`
	Timestamp       string                     `json:"Timestamp"`
	OrganizationID  string                     `json:"OrganizationId,omitempty"`
	Source          string                     `json:"Source"`
	Depth           int                        `json:"Depth,omitempty"`
	Parameters      map[string]json.RawMessage `json:"Parameters,omitempty"`
	Stage           int                        `json:"Stage,omitempty"`
	Mode            *int                       `json:"Mode,omitempty"`
	IsInTransaction *bool                      `json:"IsInTransaction,omitempty"`
}

var (
	leanLogicalName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,127}$`)
	leanMessageName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,255}$`)
	leanWCFDate     = regexp.MustCompile(`^/Date\((-?[0-9]+)([+-][0-9]{4})?\)/$`)
	leanInteger     = regexp.MustCompile(`^-?(0|[1-9][0-9]{0,17})$`)
	leanNamespace   = []byte{0x6f, 0x1f, 0x3c, 0x2e, 0x4d, 0x0a, 0x5b, 0x7e, 0x9c, 0x61, 0x2a, 0x8d, 0x7e, 0x0b, 0x5f, 0x43}
)

// leanCanonical checks a RemoteExecutionContext and returns its canonical event.
func leanCanonical(body []byte, now time.Time) ([]byte, error) {
	var rc leanContext
	if err := json.Unmarshal(body, &rc); err != nil {
		return nil, err
	}
	if !leanMessageName.MatchString(rc.MessageName) {
		return nil, errors.New("MessageName")
	}
	for name, id := range map[string]*string{"CorrelationId": rc.CorrelationID, "InitiatingUserId": rc.InitiatingUserID,
		"OperationId": rc.OperationID, "OrganizationId": rc.OrganizationID, "PrimaryEntityId": rc.PrimaryEntityID,
		"RequestId": rc.RequestID, "UserId": rc.UserID} {
		if id != nil && !leanGUID(*id) {
			return nil, errors.New(name)
		}
	}
	entity := deref(rc.PrimaryEntityName)
	if entity != "" && !leanLogicalName.MatchString(entity) {
		return nil, errors.New("PrimaryEntityName")
	}
	ev := leanEvent{SchemaVersion: "1.1", Entity: entity, Message: rc.MessageName, ChangedFields: []string{},
		TriggeredBy: strings.ToLower(firstOf(deref(rc.InitiatingUserID), deref(rc.UserID))), Source: "dataverse-webhook",
		OrganizationID: strings.ToLower(deref(rc.OrganizationID)), IsInTransaction: rc.IsInTransaction,
		Timestamp: now.UTC().Format(time.RFC3339Nano)}
	var err error
	if ev.Depth, err = leanInt(rc.Depth, 0, 10000); err != nil {
		return nil, fmt.Errorf("Depth: %w", err)
	}
	if ev.Stage, err = leanInt(rc.Stage, 10, 40); err != nil || ev.Stage != 0 && ev.Stage%10 != 0 || ev.Stage == 30 {
		return nil, errors.New("Stage")
	}
	if rc.Mode != nil {
		mode, err := leanInt(rc.Mode, 0, 1)
		if err != nil {
			return nil, fmt.Errorf("Mode: %w", err)
		}
		ev.Mode = &mode
	}
	if rc.OperationCreatedOn != "" {
		t, err := leanDate(rc.OperationCreatedOn)
		if err != nil {
			return nil, fmt.Errorf("OperationCreatedOn: %w", err)
		}
		ev.Timestamp = t
	}
	attrs := map[string]json.RawMessage{}
	for _, image := range rc.PostEntityImages {
		var e leanEntity
		if err := json.Unmarshal(image.Value, &e); err != nil {
			return nil, fmt.Errorf("PostEntityImages: %w", err)
		}
		if err := leanAttributes(e.Attributes, attrs, nil); err != nil {
			return nil, err
		}
	}
	for _, p := range rc.InputParameters {
		if p.Key != "Target" {
			v, err := leanValue(p.Value)
			if err != nil {
				return nil, fmt.Errorf("InputParameters %s: %w", p.Key, err)
			}
			if ev.Parameters == nil {
				ev.Parameters = map[string]json.RawMessage{}
			}
			ev.Parameters[p.Key] = v
			continue
		}
		var target leanEntity
		if err := json.Unmarshal(p.Value, &target); err != nil {
			return nil, fmt.Errorf("Target: %w", err)
		}
		if !leanGUID(target.ID) || !leanLogicalName.MatchString(target.LogicalName) {
			return nil, errors.New("Target")
		}
		if ev.Entity == "" {
			ev.Entity = target.LogicalName
		}
		ev.RecordID = strings.ToLower(target.ID)
		if err := leanAttributes(target.Attributes, attrs, &ev.ChangedFields); err != nil {
			return nil, err
		}
	}
	if ev.Entity == "" {
		return nil, errors.New("PrimaryEntityName")
	}
	slices.Sort(ev.ChangedFields)
	if len(attrs) > 0 {
		ev.Attributes = attrs
	}
	ev.EventName = strings.ToUpper(ev.Entity[:1]) + ev.Entity[1:] + rc.MessageName + "d"
	if ev.RecordID == "" {
		ev.RecordID = strings.ToLower(deref(rc.PrimaryEntityID))
	}
	var step string
	if rc.OwningExtension != nil {
		step = rc.OwningExtension.ID
	}
	name := strings.Join([]string{"webhook", ev.OrganizationID,
		strings.ToLower(firstOf(deref(rc.OperationID), deref(rc.RequestID), deref(rc.CorrelationID))),
		strings.ToLower(step), rc.MessageName, strings.ToLower(deref(rc.PrimaryEntityID))}, "\n")
	ev.EventID = leanUUID(name)
	ev.CorrelationID = firstOf(strings.ToLower(deref(rc.CorrelationID)), ev.EventID)
	return json.Marshal(ev)
}

// leanAttributes reads an Attributes list into attrs; with changed, the column names too.
func leanAttributes(list []leanKV, attrs map[string]json.RawMessage, changed *[]string) error {
	for _, a := range list {
		if !leanLogicalName.MatchString(a.Key) {
			return errors.New("attribute key")
		}
		v, err := leanValue(a.Value)
		if err != nil {
			return fmt.Errorf("attribute %s: %w", a.Key, err)
		}
		attrs[a.Key] = v
		if changed != nil && !strings.HasPrefix(a.Key, "modified") {
			*changed = append(*changed, a.Key)
		}
	}
	return nil
}

// leanValue turns a column value into plain JSON: Money and OptionSetValue into their number,
// EntityReference into {id, logicalName, name}, a /Date(…)/ string into RFC 3339.
func leanValue(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("missing")
	}
	switch raw[0] {
	case '{':
		var r leanReference
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		kind, _, _ := strings.Cut(r.Type, ":")
		switch kind {
		case "Money", "OptionSetValue":
			if r.Value == nil || kind == "OptionSetValue" && !leanInteger.MatchString(string(*r.Value)) {
				return nil, errors.New(kind)
			}
			return json.RawMessage(*r.Value), nil
		case "EntityReference":
			if !leanGUID(r.ID) || !leanLogicalName.MatchString(r.LogicalName) {
				return nil, errors.New("EntityReference")
			}
			return json.Marshal(leanLookup{ID: strings.ToLower(r.ID), LogicalName: r.LogicalName, Name: r.Name})
		}
		return raw, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		if strings.HasPrefix(s, "/Date(") {
			t, err := leanDate(s)
			if err != nil {
				return nil, err
			}
			return json.Marshal(t)
		}
		return raw, nil
	}
	return raw, nil
}

func leanDate(s string) (string, error) {
	m := leanWCFDate.FindStringSubmatch(s)
	if m == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return "", err
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	ms, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return "", err
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), nil
}

func leanInt(n *json.Number, lo, hi int) (int, error) {
	if n == nil {
		return 0, nil
	}
	v, err := strconv.Atoi(string(*n))
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%s is not an integer in [%d, %d]", *n, lo, hi)
	}
	return v, nil
}

func leanGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// leanUUID is a name-based (SHA-1, version 5) UUID, as dvrelay's EventId.
func leanUUID(name string) string {
	h := sha1.New()
	h.Write(leanNamespace)
	h.Write([]byte(name))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" && v != "00000000-0000-0000-0000-000000000000" {
			return v
		}
	}
	return ""
}
