package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client calls the management HTTP API.
type client struct {
	base, user, pass string
	http             http.Client
}

// apiError is a non-2xx answer with RabbitMQ's {"error","reason"} body.
type apiError struct {
	Status int
	Reason string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Reason)
}

// do sends a request with an optional JSON body and decodes a JSON answer into into.
func (c *client) do(method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case []byte:
			rd = bytes.NewReader(b)
		default:
			data, err := json.Marshal(body)
			if err != nil {
				return err
			}
			rd = bytes.NewReader(data)
		}
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.base, "/")+"/api"+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.http.Timeout == 0 {
		c.http.Timeout = 30 * time.Second
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error  string `json:"error"`
			Reason any    `json:"reason"`
		}
		reason := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Reason != nil {
			reason = fmt.Sprint(e.Reason)
		}
		if reason == "" {
			reason = http.StatusText(resp.StatusCode)
		}
		return &apiError{Status: resp.StatusCode, Reason: reason}
	}
	if into == nil || len(data) == 0 {
		return nil
	}
	if raw, ok := into.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(into)
}

// seg escapes one path segment ("/" as %2F).
func seg(s string) string { return url.PathEscape(s) }

// get sends a GET and returns the status and body whatever the status (health checks answer
// 503 with a body that says what failed).
func (c *client) get(path string) (int, []byte, error) {
	req, err := http.NewRequest("GET", strings.TrimRight(c.base, "/")+"/api"+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	if c.http.Timeout == 0 {
		c.http.Timeout = 30 * time.Second
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}
