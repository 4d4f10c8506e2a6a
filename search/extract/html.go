package extract

import (
	"io"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxHTMLToken bounds the tokenizer's buffer: a single token (a text node, a tag with its
// attributes) longer than this ends extraction with the text collected so far.
const maxHTMLToken = 4 << 20

// hiddenElements hold no visible text.
var hiddenElements = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Template: true,
	atom.Iframe: true, atom.Object: true, atom.Noembed: true, atom.Noframes: true,
}

// blockElements break lines.
var blockElements = map[atom.Atom]bool{
	atom.Address: true, atom.Article: true, atom.Aside: true, atom.Blockquote: true,
	atom.Br: true, atom.Dd: true, atom.Details: true, atom.Div: true, atom.Dl: true,
	atom.Dt: true, atom.Fieldset: true, atom.Figcaption: true, atom.Figure: true,
	atom.Footer: true, atom.Form: true, atom.H1: true, atom.H2: true, atom.H3: true,
	atom.H4: true, atom.H5: true, atom.H6: true, atom.Header: true, atom.Hr: true,
	atom.Li: true, atom.Main: true, atom.Nav: true, atom.Ol: true, atom.P: true,
	atom.Pre: true, atom.Section: true, atom.Summary: true, atom.Table: true,
	atom.Title: true, atom.Tr: true, atom.Ul: true, atom.Body: true, atom.Html: true,
	atom.Caption: true, atom.Option: true,
}

// cellElements are separated by a space.
var cellElements = map[atom.Atom]bool{atom.Td: true, atom.Th: true}

func extractHTML(r io.Reader, out *textBuf) error {
	z := html.NewTokenizer(r)
	z.SetMaxBuf(maxHTMLToken)
	hidden := 0
	for !out.full {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			// io.EOF, html.ErrBufferExceeded or a read error; the latter is reported by Text.
			return nil
		case html.TextToken:
			if hidden == 0 {
				out.writeCollapsed(string(z.Text()))
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			if hiddenElements[a] {
				switch {
				case tt == html.StartTagToken:
					hidden++
				case tt == html.EndTagToken && hidden > 0:
					hidden--
				}
			}
			if blockElements[a] {
				out.sep('\n')
			} else if cellElements[a] {
				out.sep(' ')
			}
		}
	}
	return nil
}
