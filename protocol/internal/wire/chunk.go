package wire

// ParseChunkLine parses "chunk-size [chunk-ext] CR" (the LF already cut,
// RFC 9112 §7.1.1) and returns the size.
func ParseChunkLine(line []byte) (int64, bool) {
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return 0, false // bare LF
	}
	line = line[:len(line)-1]
	i := 0
	var n int64
	for i < len(line) && IsHex(line[i]) {
		if n > 1<<58 {
			return 0, false
		}
		n = n<<4 | int64(unhex(line[i]))
		i++
	}
	if i == 0 {
		return 0, false
	}
	skipWS := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	for i < len(line) {
		// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
		skipWS()
		if i == len(line) || line[i] != ';' {
			return 0, false
		}
		i++
		skipWS()
		s := i
		for i < len(line) && IsToken(line[i]) {
			i++
		}
		if i == s {
			return 0, false
		}
		skipWS()
		if i == len(line) || line[i] != '=' {
			continue
		}
		i++
		skipWS()
		if i < len(line) && line[i] == '"' {
			i++
			for {
				if i == len(line) {
					return 0, false
				}
				c := line[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					i++
					if i == len(line) || !IsValue(line[i]) {
						return 0, false
					}
				} else if !IsQdtext(c) {
					return 0, false
				}
				i++
			}
			continue
		}
		s = i
		for i < len(line) && IsToken(line[i]) {
			i++
		}
		if i == s {
			return 0, false
		}
	}
	return n, true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
