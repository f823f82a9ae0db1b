package conformance

// A small driver for headless Chromium over the DevTools protocol on a pipe
// (--remote-debugging-pipe: the browser reads commands from its file descriptor 3 and writes
// answers and events to descriptor 4, each a JSON message ended by a NUL byte), so that tests
// can type into the dashboard's sign-in form, click, evaluate script and take screenshots
// without a WebSocket client.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// browser is one headless Chromium process, stopped when the test ends.
type browser struct {
	t      *testing.T
	cmd    *exec.Cmd
	w      *os.File // the browser's fd 3
	stderr bytes.Buffer

	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpReply
	done    chan struct{} // closed when the reader stops
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser starts headless Chromium with a fresh profile. Every command is bounded; the
// whole process group is killed when the test ends.
func startBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	cmdR, cmdW, err := os.Pipe() // we write commands, the browser reads fd 3
	if err != nil {
		t.Fatal(err)
	}
	evR, evW, err := os.Pipe() // the browser writes fd 4, we read
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, w: cmdW, pending: map[int]chan cdpReply{}, done: make(chan struct{})}
	b.cmd = exec.Command(chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--window-size=1280,900", "--hide-scrollbars",
		"--remote-debugging-pipe", "about:blank")
	b.cmd.Dir = t.TempDir()
	b.cmd.ExtraFiles = []*os.File{cmdR, evW}
	b.cmd.Stderr = &b.stderr
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	cmdR.Close()
	evW.Close()
	exited := make(chan struct{})
	go func() { b.cmd.Wait(); close(exited) }()
	go b.read(evR)
	t.Cleanup(func() {
		b.send("", "Browser.close", nil) // best effort; then make sure
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL) // helpers left behind by the browser
		<-exited
		cmdW.Close()
		<-b.done
		evR.Close()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", b.stderr.Bytes())
		}
	})
	return b
}

// read delivers answers to their callers until the browser closes its end; events are dropped.
func (b *browser) read(r *os.File) {
	defer close(b.done)
	br := bufio.NewReader(r)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// send writes a command and returns the channel its answer arrives on.
func (b *browser) send(session, method string, params any) chan cdpReply {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	m := map[string]any{"id": id, "method": method}
	if params != nil {
		m["params"] = params
	}
	if session != "" {
		m["sessionId"] = session
	}
	data, _ := json.Marshal(m)
	b.w.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := b.w.Write(append(data, 0)); err != nil {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		close(ch)
	}
	return ch
}

// call sends a command and waits (at most 30 s) for its result.
func (b *browser) call(session, method string, params any) json.RawMessage {
	b.t.Helper()
	select {
	case r, ok := <-b.send(session, method, params):
		if !ok {
			b.t.Fatalf("chromium %s: the browser went away\nstderr:\n%s", method, b.stderr.Bytes())
		}
		if r.Error != nil {
			b.t.Fatalf("chromium %s: %d %s", method, r.Error.Code, r.Error.Message)
		}
		return r.Result
	case <-time.After(30 * time.Second):
		b.t.Fatalf("chromium %s: no answer within 30s", method)
	}
	return nil
}

// tab is one page of the browser.
type tab struct {
	b       *browser
	session string
}

// newTab opens a blank page and attaches to it.
func (b *browser) newTab() *tab {
	b.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	json.Unmarshal(b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}), &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	json.Unmarshal(b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}), &att)
	if att.SessionID == "" {
		b.t.Fatal("chromium: no session for the new page")
	}
	return &tab{b: b, session: att.SessionID}
}

// navigate opens url and waits until the document has loaded.
func (p *tab) navigate(url string) {
	p.b.t.Helper()
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	json.Unmarshal(p.b.call(p.session, "Page.navigate", map[string]any{"url": url}), &nav)
	if nav.ErrorText != "" {
		p.b.t.Fatalf("navigate %s: %s", url, nav.ErrorText)
	}
	p.waitFor(`document.readyState === "complete" && location.href !== "about:blank"`, 20*time.Second)
}

// eval runs expression in the page (awaiting a promise) and stores its JSON value in out.
func (p *tab) eval(expression string, out any) {
	p.b.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	json.Unmarshal(p.b.call(p.session, "Runtime.evaluate", map[string]any{
		"expression": expression, "awaitPromise": true, "returnByValue": true,
	}), &r)
	if r.ExceptionDetails != nil {
		p.b.t.Fatalf("eval %s: %s %s", expression, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			p.b.t.Fatalf("eval %s: %v (%s)", expression, err, r.Result.Value)
		}
	}
}

// waitFor polls a boolean expression until it holds, failing the test after timeout.
func (p *tab) waitFor(expression string, timeout time.Duration) {
	p.b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		p.eval("!!("+expression+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var html string
			p.eval("document.documentElement ? document.documentElement.outerHTML : ''", &html)
			p.b.t.Fatalf("page: %s did not hold within %v; page:\n%s", expression, timeout, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dom returns the page's current HTML.
func (p *tab) dom() string {
	p.b.t.Helper()
	var html string
	p.eval("document.documentElement.outerHTML", &html)
	return html
}

// screenshot returns a PNG of the page.
func (p *tab) screenshot() []byte {
	p.b.t.Helper()
	var r struct {
		Data string `json:"data"`
	}
	json.Unmarshal(p.b.call(p.session, "Page.captureScreenshot", map[string]any{"format": "png"}), &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.b.t.Fatalf("screenshot: %v", err)
	}
	return png
}

// signIn fills in and submits the dashboard's sign-in form, then waits until the page shows
// the signed-in user.
func (p *tab) signIn(user, password string) {
	p.b.t.Helper()
	p.waitFor(`document.getElementById("login") && !document.getElementById("login").hidden`, 20*time.Second)
	js, _ := json.Marshal([]string{user, password})
	p.eval(fmt.Sprintf(`(() => { const [u, pw] = %s;
		document.getElementById("login-user").value = u;
		document.getElementById("login-pass").value = pw;
		document.getElementById("login-form").requestSubmit(); })()`, js), nil)
	p.waitFor(`document.getElementById("user").textContent === `+strings.TrimSpace(string(mustJSON(user))), 20*time.Second)
}

func mustJSON(v any) []byte {
	data, _ := json.Marshal(v)
	return data
}
