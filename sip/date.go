package sip

// DateLen is the length of a date written by AppendDate.
const DateLen = len("Sun, 06 Nov 1994 08:49:37 GMT")

// AppendDate appends unix (seconds since 1970, UTC) as an RFC 7231 section
// 7.1.1.1 IMF-fixdate, the form RFC 3261 section 20.17 requires for the SIP
// Date header: "Sun, 06 Nov 1994 08:49:37 GMT", always DateLen bytes, in
// GMT. It does not allocate when dst has room. Dates before 1970 are
// written as 1970-01-01 00:00:00 and after 9999 as 9999-12-31 23:59:59
// (the years ParseDate reads back).
func AppendDate(dst []byte, unix int64) []byte {
	const maxUnix = 253402300799 // 9999-12-31 23:59:59
	unix = min(max(unix, 0), maxUnix)
	days, secs := unix/86400, int(unix%86400)
	y, m, d := civilFromDays(days)
	const wk, mon = "ThuFriSatSunMonTueWed", "JanFebMarAprMayJunJulAugSepOctNovDec"
	w := int(days%7) * 3 // 1970-01-01 was a Thursday
	dst = append(dst, wk[w:w+3]...)
	dst = append(dst, ',', ' ', byte('0'+d/10), byte('0'+d%10), ' ')
	dst = append(dst, mon[(m-1)*3:m*3]...)
	dst = append(dst, ' ', byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), ' ')
	h, mi, se := secs/3600, secs/60%60, secs%60
	dst = append(dst, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':',
		byte('0'+se/10), byte('0'+se%10))
	return append(dst, " GMT"...)
}

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

// civilFromDays is the inverse of daysFromCivil for days >= 0 (Howard
// Hinnant's civil_from_days).
func civilFromDays(days int64) (y, m, d int) {
	z := days + 719468
	era := z / 146097
	doe := int(z - era*146097)
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + int(era)*400
	if m <= 2 {
		y++
	}
	return y, m, d
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
