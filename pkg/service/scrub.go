package service

import (
	"errors"
	"strings"
)

// scrub removes a password from an error's text, should a driver echo it.
func scrub(err error, pw string) error {
	if pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
}
