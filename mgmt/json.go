package mgmt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warrenmq/warren/amqp"
)

// obj is a JSON object as the API returns it.
type obj = map[string]any

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// writeError writes RabbitMQ's error body {"error": ..., "reason": ...}.
func writeError(w http.ResponseWriter, code int, errKey, reason string) {
	writeJSON(w, code, obj{"error": errKey, "reason": reason})
}

func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...))
}

// writeBrokerError maps a broker error to RabbitMQ's HTTP answer: 404 for NOT_FOUND, 400 with
// the error text without its "CODE - " prefix otherwise.
func writeBrokerError(w http.ResponseWriter, err error) {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	text := ae.Text
	if i := strings.Index(text, " - "); i >= 0 {
		text = text[i+3:]
	}
	switch ae.Code {
	case amqp.NotFound:
		writeError(w, http.StatusNotFound, "not_found", text)
	case amqp.AccessRefused:
		writeError(w, http.StatusForbidden, "access_refused", text)
	default:
		writeError(w, http.StatusBadRequest, "bad_request", text)
	}
}

// writeList writes a list with RabbitMQ's query options: sort, sort_reverse, name (with
// use_regex), page/page_size (which wrap the list in a page object) and columns.
func writeList(w http.ResponseWriter, r *http.Request, items []obj) {
	q := r.URL.Query()
	total := len(items)
	if name := q.Get("name"); name != "" {
		var match func(string) bool
		if q.Get("use_regex") == "true" {
			re, err := regexp.Compile(name)
			if err != nil {
				badRequest(w, "invalid regex: %v", err)
				return
			}
			match = re.MatchString
		} else {
			lname := strings.ToLower(name)
			match = func(s string) bool { return strings.Contains(strings.ToLower(s), lname) }
		}
		kept := items[:0]
		for _, it := range items {
			if n, _ := it["name"].(string); match(n) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	sortKey := q.Get("sort")
	if sortKey == "" {
		sortKey = "name"
	}
	sort.SliceStable(items, func(i, j int) bool { return lessValue(lookup(items[i], sortKey), lookup(items[j], sortKey)) })
	if q.Get("sort_reverse") == "true" {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	cols := columns(r)
	if cols != nil {
		for i, it := range items {
			items[i] = pick(it, cols)
		}
	}
	if q.Get("page") == "" {
		writeJSON(w, http.StatusOK, items)
		return
	}
	page, err1 := strconv.Atoi(q.Get("page"))
	size := 100
	var err2 error
	if ps := q.Get("page_size"); ps != "" {
		size, err2 = strconv.Atoi(ps)
	}
	if err1 != nil || err2 != nil || page < 1 || size < 1 || size > 500 {
		badRequest(w, "invalid page or page_size")
		return
	}
	filtered := len(items)
	pageCount := (filtered + size - 1) / size
	lo := min((page-1)*size, filtered)
	hi := min(lo+size, filtered)
	writeJSON(w, http.StatusOK, obj{
		"filtered_count": filtered, "item_count": hi - lo, "items": items[lo:hi],
		"page": page, "page_count": pageCount, "page_size": size, "total_count": total,
	})
}

// writeObj writes one object, keeping only ?columns= when given.
func writeObj(w http.ResponseWriter, r *http.Request, o obj) {
	if cols := columns(r); cols != nil {
		o = pick(o, cols)
	}
	writeJSON(w, http.StatusOK, o)
}

func columns(r *http.Request) []string {
	c := r.URL.Query().Get("columns")
	if c == "" {
		return nil
	}
	return strings.Split(c, ",")
}

// lookup follows a dotted path ("message_stats.publish_details.rate").
func lookup(o obj, path string) any {
	var cur any = o
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(obj)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// pick keeps the dotted paths cols of o, with their nesting.
func pick(o obj, cols []string) obj {
	out := obj{}
	for _, c := range cols {
		parts := strings.Split(c, ".")
		var cur any = o
		ok := true
		for _, p := range parts {
			m, isObj := cur.(obj)
			if !isObj {
				ok = false
				break
			}
			if cur, isObj = m[p]; !isObj {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		dst := out
		for _, p := range parts[:len(parts)-1] {
			next, _ := dst[p].(obj)
			if next == nil {
				next = obj{}
				dst[p] = next
			}
			dst = next
		}
		dst[parts[len(parts)-1]] = cur
	}
	return out
}

func lessValue(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, _ := b.(string)
		return x < y
	case bool:
		y, _ := b.(bool)
		return !x && y
	}
	fa, aok := toFloat(a)
	fb, bok := toFloat(b)
	if aok && bok {
		return fa < fb
	}
	return !aok && bok
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint16:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// details is RabbitMQ's {"rate": r} companion of a counter.
func details(rate float64) obj {
	if math.IsNaN(rate) || math.IsInf(rate, 0) {
		rate = 0
	}
	return obj{"rate": math.Round(rate*10) / 10}
}

// decodeBody reads a JSON object request body; numbers stay json.Number.
func decodeBody(r *http.Request, into any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(into)
}

// boolField reads a JSON boolean that rabbitmqadmin may send as "true"/"false".
func boolField(m obj, key string, def bool) (bool, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return def, nil
	}
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch x {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("not_boolean: %v", v)
}

func stringField(m obj, key string) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// intField reads an integer given as a JSON number or a string.
func intField(m obj, key string, def int) (int, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return def, nil
	}
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return int(n), err
	case string:
		return strconv.Atoi(x)
	case float64:
		return int(x), nil
	}
	return 0, fmt.Errorf("not an integer: %v", v)
}

// toTable converts a JSON object (decoded with UseNumber) to an AMQP field table: integers
// become long ('l'), as RabbitMQ stores them, other numbers double.
func toTable(v any) (amqp.Table, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(obj)
	if !ok {
		if l, ok := v.([]any); ok && len(l) == 0 {
			return nil, nil // RabbitMQ's empty arguments sometimes arrive as []
		}
		return nil, fmt.Errorf("expected an object, got %T", v)
	}
	if len(m) == 0 {
		return nil, nil
	}
	t := make(amqp.Table, len(m))
	for k, x := range m {
		t[k] = toFieldValue(x)
	}
	return t, nil
}

func toFieldValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	case obj:
		t, _ := toTable(x)
		if t == nil {
			t = amqp.Table{}
		}
		return t
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toFieldValue(e)
		}
		return out
	}
	return v // string, bool, nil
}

// tableJSON converts an AMQP table to JSON values ({} for nil).
func tableJSON(t amqp.Table) obj {
	out := make(obj, len(t))
	for k, v := range t {
		out[k] = fieldJSON(v)
	}
	return out
}

func fieldJSON(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		return tableJSON(x)
	case map[string]any:
		return tableJSON(amqp.Table(x))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fieldJSON(e)
		}
		return out
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return x.Unix()
	case amqp.Decimal:
		return float64(x.Value) / math.Pow10(int(x.Scale))
	case float32:
		return float64(x)
	}
	return v
}
