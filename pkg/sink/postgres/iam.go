package postgres

import (
	"context"
	"net"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/jackc/pgx/v5"
)

// iamToken returns an RDS IAM authentication token for c's host, port and
// user, signed with credentials from the default AWS chain. A token is valid
// for 15 minutes and only for opening a connection, so each connection gets
// its own. With several hosts in the DSN, the token is for the first.
func iamToken(ctx context.Context, region string, c *pgx.ConnConfig) (string, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return "", err
	}
	endpoint := net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	return auth.BuildAuthToken(ctx, endpoint, region, c.User, awsCfg.Credentials)
}
