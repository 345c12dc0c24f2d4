package dataverse

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TokenError is a token request the identity endpoint (the managed identity endpoint, or Entra ID
// for a client secret) answered with an error. It keeps the status and the endpoint's error code
// and drops the rest of the answer: its descriptions quote client ids, resource names and user
// names, and step errors end up in logs and dead-letter descriptions.
//
// It has no HTTPStatus method on purpose: a refused token is the deployment's identity setup,
// which an operator fixes, so the worker's classifier keeps retrying rather than dead-lettering
// every event as a 400 would.
type TokenError struct {
	Status int
	Code   string // the OAuth "error" (invalid_request) or error.code; empty when the answer had none
}

func (e *TokenError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("identity endpoint answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("identity endpoint answered %d %s (error %s)", e.Status, http.StatusText(e.Status), e.Code)
}

// errorCode is the shape of an error code worth keeping; anything else in the field (an
// endpoint that puts a sentence there) is dropped with the rest of the body.
var errorCode = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// maxTokenErrorBody bounds how much of an identity endpoint's error answer is parsed for its code.
const maxTokenErrorBody = 16 << 10

// tokenError replaces a credential's failure that carries the endpoint's answer by a
// *TokenError. Other failures (the endpoint unreachable, the context done) pass unchanged.
func tokenError(err error) error {
	var failed *azidentity.AuthenticationFailedError
	if !errors.As(err, &failed) || failed.RawResponse == nil {
		return err
	}
	e := &TokenError{Status: failed.RawResponse.StatusCode}
	body, readErr := runtime.Payload(failed.RawResponse)
	if readErr != nil || len(body) > maxTokenErrorBody {
		return e
	}
	var answer struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &answer) != nil || len(answer.Error) == 0 {
		return e
	}
	var code string
	if json.Unmarshal(answer.Error, &code) != nil {
		var obj struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(answer.Error, &obj) == nil {
			code = obj.Code
		}
	}
	if errorCode.MatchString(code) {
		e.Code = code
	}
	return e
}
