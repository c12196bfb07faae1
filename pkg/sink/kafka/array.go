package kafka

// appendArray converts PostgreSQL's array text output into a JSON array,
// nested for several dimensions; elem appends the JSON form of one element's
// text, which it must not keep. NULL elements become null.
func (e *values) appendArray(dst, s []byte, elem func(dst, el []byte) ([]byte, error)) ([]byte, error) {
	e.array = jsonArray{dst: dst, elem: elem}
	err := e.arrays.Walk(s, &e.array)
	dst = e.array.dst
	e.array = jsonArray{}
	return dst, err
}

// jsonArray appends a walked array as JSON.
type jsonArray struct {
	dst  []byte
	elem func(dst, el []byte) ([]byte, error)
}

func (a *jsonArray) Open(i int) error {
	if i > 0 {
		a.dst = append(a.dst, ',')
	}
	a.dst = append(a.dst, '[')
	return nil
}

func (a *jsonArray) Close() error {
	a.dst = append(a.dst, ']')
	return nil
}

func (a *jsonArray) Elem(i int, text []byte, null bool) error {
	if i > 0 {
		a.dst = append(a.dst, ',')
	}
	if null {
		a.dst = append(a.dst, "null"...)
		return nil
	}
	var err error
	a.dst, err = a.elem(a.dst, text)
	return err
}
