package dynalitetest

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func TestStartAnswers(t *testing.T) {
	s := StartT(t)
	out, err := s.Client().ListTables(context.Background(), &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables: %v", err)
	}
	if len(out.TableNames) != 0 {
		t.Fatalf("a new server has tables: %v", out.TableNames)
	}
}
