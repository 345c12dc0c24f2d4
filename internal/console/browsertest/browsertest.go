// Package browsertest runs the console's tests in headless Chromium, driven from Go with
// chromedp, the way support uses the console. Only tests import it.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// HowTo is the one line a run without Chromium prints.
const HowTo = "console browser tests need Chromium: apt-get install chromium (or set DVRELAY_CHROMIUM to its path), then go test ./handler ./internal/console -run Console"

// Chromium finds the browser, or skips the test; under CI (CI=true) its absence fails the test.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, c := range []string{os.Getenv("DVRELAY_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(HowTo)
	}
	t.Skip(HowTo)
	return ""
}

// Browser is a tab in a fresh headless Chromium with a profile of its own, closed when the test
// ends. It counts every JavaScript dialog a page opens, and dismisses it.
type Browser struct {
	Ctx     context.Context
	Dialogs atomic.Int32
}

// New starts Chromium 1366×900, as a laptop screen.
func New(t testing.TB) *Browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(Chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests may run as root, where the sandbox refuses to start
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.WindowSize(1366, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	b := &Browser{Ctx: ctx}
	// A dialog stops the page until it is dismissed: count it, dismiss it, let the test fail.
	go func() {
		for _, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			b.Dialogs.Add(1)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return b
}

// Do runs steps in the tab, within 30 seconds.
func (b *Browser) Do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Read runs a in b's tab and returns its value.
func Read[T any](t testing.TB, b *Browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// Screenshot saves the whole page as a PNG at path.
func (b *Browser) Screenshot(t testing.TB, path string) {
	t.Helper()
	png := Read(t, b, "screenshot "+filepath.Base(path), chromedp.FullScreenshot(100))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}
