package event

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wcfDate is the DataContract date grammar: /Date(<ms>)/ or /Date(<ms>±hhmm)/.
var wcfDate = regexp.MustCompile(`^/Date\((-?[0-9]+)(?:([+-])([0-9]{2})([0-9]{2}))?\)/$`)

// Bounds, in Unix milliseconds, of an instant RFC 3339 can write (0001-01-01 to
// 9999-12-31T23:59:59.999Z). Dataverse itself stores 1753-01-01 to 9999-12-31.
const (
	minMillis = -62135596800000
	maxMillis = 253402300799999
)

var errNotWCFDate = errors.New("not a /Date(...)/ value")

// logicalName is a Dataverse table or column logical name, as the schemas constrain it.
var logicalName = regexp.MustCompile(patternLogicalName)

const maxLogicalNameLength = 128

// IsLogicalName reports whether s is a Dataverse table or column logical name as the schemas
// constrain one: lower-case letters, digits and _, not starting with a digit, at most 128
// characters. A lookup's value property (_parentaccountid_value) has the shape too. Every check
// of a logical name (routes, register, recover, the Web API client) asks here.
func IsLogicalName(s string) bool {
	return s != "" && len(s) <= maxLogicalNameLength && logicalName.MatchString(s)
}

// parseWCFDate reads a DataContract date. The milliseconds are UTC; the optional ±hhmm suffix
// is the server's offset as the .NET serializer records it and does not shift the instant.
func parseWCFDate(s string) (time.Time, error) {
	m := wcfDate.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, errNotWCFDate
	}
	ms, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("milliseconds %s out of range", m[1])
	}
	if m[3] != "" {
		hh, _ := strconv.Atoi(m[3])
		mm, _ := strconv.Atoi(m[4])
		if hh > 23 || mm > 59 {
			return time.Time{}, fmt.Errorf("offset %s%s%s is not ±hhmm", m[2], m[3], m[4])
		}
	}
	if ms < minMillis || ms > maxMillis {
		return time.Time{}, fmt.Errorf("milliseconds %d are outside years 0001-9999", ms)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// errNotReadable reports an ISO 8601 OperationCreatedOn that names no instant an event can
// carry (February 30, an offset of a day or more, a year outside 0001-9999 in UTC).
var errNotReadable = errors.New("not a readable ISO 8601 date")

// isoLayouts are the ISO 8601 forms tools that re-serialize a context write: .NET's round-trip
// "o" (seven fractional digits, Z or ±hh:mm, or no zone for an unspecified kind), RFC 3339, the
// basic offset ±hhmm, minutes without seconds, a bare date. time.Parse takes fractional seconds
// after the seconds, with '.' or ',', without the layout naming them.
var isoLayouts = []string{
	"2006-01-02T15:04:05Z07:00",
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04:05Z07",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04Z0700",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseOperationDate reads OperationCreatedOn: a DataContract date, strictly (Dataverse writes
// it, so a bad one is a bad payload), or an ISO 8601 date-time, leniently. An ISO value without
// a zone is UTC, as Dataverse keeps every time. An ISO value that names no readable instant
// returns errNotReadable: the event then takes the receive time, as one without the member does,
// because a 400 is never retried and would lose the event for the sake of its timestamp.
func parseOperationDate(s string) (time.Time, error) {
	if strings.HasPrefix(s, "/Date(") {
		return parseWCFDate(s)
	}
	if len(s) > 10 && (s[10] == ' ' || s[10] == 't') {
		s = s[:10] + "T" + s[11:]
	}
	s = strings.Replace(s, "z", "Z", 1)
	for _, layout := range isoLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		_, offset := t.Zone()
		if offset <= -24*3600 || offset >= 24*3600 {
			return time.Time{}, errNotReadable
		}
		if ms := t.UnixMilli(); ms < minMillis || ms > maxMillis {
			return time.Time{}, errNotReadable
		}
		return t.UTC(), nil
	}
	return time.Time{}, errNotReadable
}

// parseTimestamp reads an RFC 3339 date-time. time.Parse takes offsets up to +24:00 and a
// minute of 60 (+23:60 reads as +24:00); RFC 3339's time-offset is ±hh:mm with hh 00-23 and mm
// 00-59, and an offset past a day would make two spellings of one instant.
func parseTimestamp(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	if n := len(s); n >= 6 && (s[n-6] == '+' || s[n-6] == '-') && s[n-3] == ':' {
		// time.Parse has checked these are digits.
		if hh, mm := s[n-5:n-3], s[n-2:]; hh > "23" || mm > "59" {
			return time.Time{}, fmt.Errorf("offset %s is not ±hh:mm within ±23:59", s[n-6:])
		}
	}
	return t, nil
}

// FormatTime writes a time as every canonical event's Timestamp: RFC 3339 in UTC, fractional
// seconds only when not zero.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// pascalCase turns a logical or message name into PascalCase, underscores splitting words:
// new_customactivity → NewCustomactivity, opportunity → Opportunity, new_Approve → NewApprove.
func pascalCase(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for word := range strings.SplitSeq(name, "_") {
		if word == "" {
			continue
		}
		b.WriteString(strings.ToUpper(word[:1]))
		b.WriteString(word[1:])
	}
	return b.String()
}

// pastTense gives the event suffix for a message. Create, Update and Delete become Created,
// Updated and Deleted; every other message (Assign, SetState, Win, a custom API such as
// new_Approve) is kept as its PascalCase name, so the rule never guesses at English grammar
// and an event name never changes meaning when Microsoft adds a message.
func pastTense(message string) string {
	switch message {
	case "Create":
		return "Created"
	case "Update":
		return "Updated"
	case "Delete":
		return "Deleted"
	default:
		return pascalCase(message)
	}
}

// EventNameFor is the canonical event name for a message on a table:
// PascalCase(entity) + pastTense(message), e.g. ("opportunity", "Update") → OpportunityUpdated,
// ("new_customactivity", "Create") → NewCustomactivityCreated, ("opportunity", "Win") →
// OpportunityWin. Unbound messages (entity "none") are named by the message alone:
// ("none", "new_OrderSubmitted") → NewOrderSubmitted.
func EventNameFor(entity, message string) string {
	if entity == unboundEntity || entity == "" {
		return pastTense(message)
	}
	return pascalCase(entity) + pastTense(message)
}

// StageName names a pipeline stage as Dataverse's tools do: PreValidation, PreOperation,
// MainOperation, PostOperation; another number is "stage <n>".
func StageName(stage int) string {
	switch stage {
	case StagePreValidation:
		return "PreValidation"
	case StagePreOperation:
		return "PreOperation"
	case 30:
		return "MainOperation"
	case StagePostOperation:
		return "PostOperation"
	}
	return "stage " + strconv.Itoa(stage)
}

// ModeName names an execution mode: synchronous or asynchronous; another number is
// "mode <n>".
func ModeName(mode int) string {
	switch mode {
	case ModeSynchronous:
		return "synchronous"
	case ModeAsynchronous:
		return "asynchronous"
	}
	return "mode " + strconv.Itoa(mode)
}

// entityAndMessageFromEventName recovers Entity and Message from a plugin event name when that is
// unambiguous: a single-word table (one capital letter) followed by Created, Updated or
// Deleted. OpportunityUpdated → (opportunity, Update); NewCustomactivityUpdated → ("", Update),
// because the underscores of a multi-word logical name cannot be recovered.
func entityAndMessageFromEventName(name string) (entity, message string) {
	for _, m := range []string{"Create", "Update", "Delete"} {
		prefix, ok := strings.CutSuffix(name, pastTense(m))
		if !ok {
			continue
		}
		if prefix != "" && strings.IndexFunc(prefix[1:], isUpper) < 0 && isUpper(rune(prefix[0])) {
			lower := strings.ToLower(prefix)
			if len(lower) <= maxLogicalNameLength && logicalName.MatchString(lower) {
				entity = lower
			}
		}
		return entity, m
	}
	return "", ""
}

func isUpper(r rune) bool { return r >= 'A' && r <= 'Z' }
