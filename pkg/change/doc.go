// Package change is cdcd's leaf data model: WAL positions, source transactions,
// relations (table schemas), row changes and column values.
//
// Every other cdcd package depends on it; it depends on nothing of cdcd's.
// Values keep their PostgreSQL wire form (text or binary) so that nothing is
// lost between the source and a sink, and carry explicit states for NULL,
// "absent" (not sent) and "unchanged TOASTed value" (sent as a placeholder
// that a sink must never write).
package change
