package oneline

import "testing"

func TestEscape_keeps_text_on_one_line_and_visible(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"message":"customer account 4711 is blocked"}`, `{"message":"customer account 4711 is blocked"}`},
		{"line one\nline two\r\n\tend", `line one\nline two\r\n\tend`},
		{"bell\a and escape \x1b[31mred", `bell\u0007 and escape \u001b[31mred`},
		{"hidden \u202etxt.exe", `hidden \u202etxt.exe`},
		{"sep\u2028arator", `sep\u2028arator`},
		{"bad \xff byte", "bad \uFFFD byte"},
		{"naïve café", "naïve café"},
	} {
		if got := Escape([]byte(tt.in)); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
