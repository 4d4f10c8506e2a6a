package extract

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Markdown is simplified line by line with regular expressions (RE2: linear time).
// Fenced code keeps its content (identifiers are useful search terms) without the fences.
var (
	mdFence      = regexp.MustCompile("^\\s*(```+|~~~+)")
	mdRefDef     = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*\S+`)
	mdRule       = regexp.MustCompile(`^\s{0,3}(?:[-*_=]\s*){3,}$`)
	mdTableSep   = regexp.MustCompile(`^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?\s*$`)
	mdHeading    = regexp.MustCompile(`^\s{0,3}#{1,6}(?:\s+|$)`)
	mdHeadingEnd = regexp.MustCompile(`\s+#+\s*$`)
	mdQuote      = regexp.MustCompile(`^\s*(?:>\s?)+`)
	mdList       = regexp.MustCompile(`^\s*(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?`)
	mdInlineLink = regexp.MustCompile(`!?\[([^\[\]]*)\]\((?:[^()]|\([^()]*\))*\)`)
	mdRefLink    = regexp.MustCompile(`!?\[([^\[\]]*)\]\[[^\[\]]*\]`)
	mdAutolink   = regexp.MustCompile(`<((?:https?|ftp|mailto):[^\s<>]*)>`)
	mdHTMLTag    = regexp.MustCompile(`</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<!--.*?-->`)
	mdMarkers    = strings.NewReplacer("**", "", "~~", "", "*", "", "`", "", "|", " ")
)

func extractMarkdown(r io.Reader, out *textBuf) error {
	br := bufio.NewReaderSize(r, 64<<10)
	inFence := false
	fence := ""
	var carry []byte // the unfinished word of a long line's previous piece
	for !out.full {
		// A line longer than the buffer comes in pieces, cut after their last space.
		chunk, err := br.ReadSlice('\n')
		piece := append(carry, chunk...)
		carry = nil
		partial := errors.Is(err, bufio.ErrBufferFull)
		if partial {
			if i := bytes.LastIndexAny(piece, " \t"); i > 0 {
				piece, carry = piece[:i], bytes.Clone(piece[i:])
			}
		}
		if len(piece) > 0 {
			line := strings.TrimRight(string(piece), "\r\n")
			inFence, fence = markdownLine(line, inFence, fence, out)
			if partial {
				out.pending = ' ' // not the end of the line yet
			}
		}
		if err != nil && !partial {
			return nil // io.EOF, or a read error that Text reports
		}
	}
	return nil
}

// markdownLine writes the text of one line and returns the fenced-code state after it.
func markdownLine(line string, inFence bool, fence string, out *textBuf) (bool, string) {
	if m := mdFence.FindStringSubmatch(line); m != nil {
		if !inFence {
			return true, m[1]
		}
		if strings.HasPrefix(m[1], fence) && strings.TrimSpace(line[len(m[0]):]) == "" {
			return false, ""
		}
	}
	if inFence {
		out.WriteString(line)
		out.sep('\n')
		return inFence, fence
	}
	if mdRefDef.MatchString(line) || mdRule.MatchString(line) || mdTableSep.MatchString(line) {
		return inFence, fence
	}
	if loc := mdHeading.FindStringIndex(line); loc != nil {
		line = mdHeadingEnd.ReplaceAllString(line[loc[1]:], "")
	}
	line = mdQuote.ReplaceAllString(line, "")
	line = mdList.ReplaceAllString(line, "")
	line = mdAutolink.ReplaceAllString(line, "$1")
	// Twice, for an image inside a link: [![alt](img.png)](https://...).
	for range 2 {
		line = mdInlineLink.ReplaceAllString(line, "$1")
		line = mdRefLink.ReplaceAllString(line, "$1")
	}
	line = mdHTMLTag.ReplaceAllString(line, "")
	line = stripUnderscores(mdMarkers.Replace(line))
	out.writeCollapsed(line)
	out.sep('\n')
	return inFence, fence
}

// stripUnderscores drops runs of '_' used as emphasis markers, keeping those inside words
// such as snake_case identifiers.
func stripUnderscores(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] != '_' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == '_' {
			j++
		}
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[j:])
		if isWordRune(before) && isWordRune(after) {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

func isWordRune(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}
