package postgres

// CitusConfig tunes FlavorCitus.
type CitusConfig struct{}
