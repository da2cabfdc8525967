package sip

// ParseDate parses a SIP Date header value (RFC 3261 section 20.17, the
// RFC 1123 form of RFC 2616 section 3.3.1), for example
// "Mon, 23 Nov 2026 16:33:39 GMT", and returns Unix seconds. It does not
// allocate.
//
//	SIP-date = wkday "," SP date1 SP time SP "GMT"
//	date1    = 2DIGIT SP month SP 4DIGIT
//	time     = 2DIGIT ":" 2DIGIT ":" 2DIGIT
//
// Leniency: surrounding and repeated white space is accepted, the day of
// month may have one digit, names are case-insensitive, and the weekday
// name must be a valid one but is not checked against the date. A leap
// second (:60) is accepted and counts as the next second. Years 1970-9999.
func ParseDate(v []byte) (unix int64, ok bool) {
	p := 0
	ws := func() {
		for p < len(v) && (v[p] == ' ' || v[p] == '\t') {
			p++
		}
	}
	word := func() []byte {
		s := p
		for p < len(v) && ('a' <= v[p]|0x20 && v[p]|0x20 <= 'z') {
			p++
		}
		return v[s:p]
	}
	num := func(minDigits, maxDigits int) (int, bool) {
		s := p
		n := 0
		for p < len(v) && p-s < maxDigits && isDigit(v[p]) {
			n = n*10 + int(v[p]-'0')
			p++
		}
		return n, p-s >= minDigits && (p >= len(v) || !isDigit(v[p]))
	}
	expect := func(c byte) bool {
		if p < len(v) && v[p] == c {
			p++
			return true
		}
		return false
	}

	ws()
	if nameIndex(word(), "sunmontuewedthufrisat") < 0 {
		return 0, false
	}
	ws()
	if !expect(',') {
		return 0, false
	}
	ws()
	day, ok1 := num(1, 2)
	ws()
	month := nameIndex(word(), "janfebmaraprmayjunjulaugsepoctnovdec") + 1
	ws()
	year, ok2 := num(4, 4)
	ws()
	hour, ok3 := num(2, 2)
	ok4 := expect(':')
	minute, ok5 := num(2, 2)
	ok6 := expect(':')
	sec, ok7 := num(2, 2)
	ws()
	zone := word()
	ws()
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || p != len(v) || month == 0 ||
		!equalFold(zone, "gmt") || year < 1970 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 60 {
		return 0, false
	}
	days := daysFromCivil(year, month, day)
	return days*86400 + int64(hour*3600+minute*60+sec), true
}

// nameIndex returns the index of the three-letter name w in list (names
// concatenated, lower case), or -1.
func nameIndex(w []byte, list string) int {
	if len(w) != 3 {
		return -1
	}
	for i := 0; i+3 <= len(list); i += 3 {
		if equalFold(w, list[i:i+3]) {
			return i / 3
		}
	}
	return -1
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns days since 1970-01-01 of a proleptic Gregorian date
// (Howard Hinnant's days_from_civil).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400 // y >= 1969 here, so no negative rounding
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}
