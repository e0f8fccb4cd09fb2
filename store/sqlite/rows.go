package sqlite

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// Statements that write many rows read them from one argument, a JSON
// array with one string per row, through json_each, and cut each string
// with substr (a third of the cost of ->> on an array per row, which
// json_each turns back into text and ->> parses again). A rowShape says
// what a row holds: texts and integers. A row's string is three digits of
// length for each text (in characters, as substr counts them), the
// integers in rowIntLen digits each, then the texts.
type rowShape struct{ texts, ints int }

const (
	rowIntLen  = 20
	rowTextMax = 999 // three digits of length
)

// head is where a row's texts start, less one.
func (r rowShape) head() int { return 3*r.texts + r.ints*rowIntLen }

// intSQL is the SQL for integer i of a row j.value.
func (r rowShape) intSQL(i int) string {
	return "CAST(substr(j.value, " + strconv.Itoa(3*r.texts+1+i*rowIntLen) + ", " + strconv.Itoa(rowIntLen) + ") AS INTEGER)"
}

// textSQL is the SQL for text i of a row j.value.
func (r rowShape) textSQL(i int) string {
	off := strconv.Itoa(r.head() + 1)
	for k := range i {
		off += " + " + textLenSQL(k)
	}
	return "substr(j.value, " + off + ", " + textLenSQL(i) + ")"
}

func textLenSQL(i int) string {
	return "CAST(substr(j.value, " + strconv.Itoa(3*i+1) + ", 3) AS INTEGER)"
}

// errRowField refuses what a row cannot carry: a text that is not UTF-8
// (JSON text cannot hold it as it is) or over rowTextMax characters, a
// negative integer. Callers either never have one (ids, codes, networks,
// times after 1970, counts) or write such a row another way (an import).
var errRowField = errors.New("sqlite: a row holds a field a row cannot carry")

// appendRow appends a row of texts and ints, as r reads it, to buf; on
// errRowField buf is as it was.
func (r rowShape) appendRow(buf []byte, texts []string, ints []int64) ([]byte, error) {
	if len(texts) != r.texts || len(ints) != r.ints {
		panic("sqlite: a row out of its shape")
	}
	mark := len(buf)
	buf = append(buf, '"')
	for _, s := range texts {
		n := utf8.RuneCountInString(s)
		if n > rowTextMax || !utf8.ValidString(s) {
			return buf[:mark], errRowField
		}
		buf = append(buf, byte('0'+n/100), byte('0'+n/10%10), byte('0'+n%10))
	}
	for _, v := range ints {
		if v < 0 {
			return buf[:mark], errRowField
		}
		var d [rowIntLen]byte
		b := strconv.AppendInt(d[:0], v, 10)
		for range rowIntLen - len(b) {
			buf = append(buf, '0')
		}
		buf = append(buf, b...)
	}
	for _, s := range texts {
		buf = appendJSONStringBody(buf, s)
	}
	return append(buf, '"'), nil
}

// appendJSONStringBody appends s as the inside of a JSON string: quotes,
// backslashes and control characters escaped, everything else as it is.
func appendJSONStringBody(buf []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c < 0x20:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		default:
			buf = append(buf, c)
		}
	}
	return buf
}
