package dsn_test

import (
	"errors"
	"fmt"

	"github.com/cdcd-io/cdcd/pkg/dsn"
)

func Example() {
	d := "host=db.example.com user=cdcd password='s3cret pw' dbname=app"
	fmt.Println(dsn.Redact(d))
	fmt.Println(dsn.Host(d), dsn.SSLMode(d))

	err := dsn.RedactError(errors.New(`server said "s3cret pw"`), dsn.Password(d))
	fmt.Println(err)

	d, _ = dsn.WithPassword("postgres://cdcd@db.example.com/app", "p@ss/word")
	fmt.Println(d)
	// Output:
	// host=db.example.com user=cdcd password=xxxxx dbname=app
	// db.example.com prefer
	// server said "xxxxx"
	// postgres://cdcd:p%40ss%2Fword@db.example.com/app
}
