package change

// Relation is the schema of a replicated table as announced by a pgoutput
// Relation message, completed with the real primary key read from the catalog.
type Relation struct {
	// OID is the table's pg_class OID on the source.
	OID uint32
	// Schema and Name identify the table.
	Schema, Name string
	// ReplicaIdentity is the table's REPLICA IDENTITY setting: 'd' default,
	// 'n' nothing, 'f' full, 'i' index.
	ReplicaIdentity byte
	// Columns are in the order of the Relation message (which is the order of
	// every tuple of this relation), not necessarily pg_attribute's.
	Columns []Column
	// PrimaryKey holds indexes into Columns of the table's primary-key
	// columns, read from the catalog (under REPLICA IDENTITY FULL pgoutput
	// flags every column as key, so the flags cannot be used). Empty when the
	// table has no primary key.
	PrimaryKey []int
}

// Column is one column of a Relation.
type Column struct {
	// Name is the column name.
	Name string
	// TypeOID is the column's data type OID.
	TypeOID uint32
	// TypeName is the type's name, schema-qualified when it is not in
	// pg_catalog (e.g. "int4", "public.mood"); empty if unknown.
	TypeName string
	// TypeMod is the type modifier (atttypmod), -1 when none.
	TypeMod int32
	// Key is pgoutput's flag: the column is part of the replica identity.
	Key bool
}

// QualifiedName is the unquoted "schema.name" used in logs and config.
func (r *Relation) QualifiedName() string { return r.Schema + "." + r.Name }

// KeyColumns returns the indexes of the columns identifying a row: the
// primary key when the table has one, otherwise the replica-identity columns
// flagged by pgoutput (a unique index identity), otherwise nil.
func (r *Relation) KeyColumns() []int {
	if len(r.PrimaryKey) > 0 {
		return r.PrimaryKey
	}
	if r.ReplicaIdentity == 'f' || r.ReplicaIdentity == 'n' {
		return nil
	}
	var keys []int
	for i, c := range r.Columns {
		if c.Key {
			keys = append(keys, i)
		}
	}
	return keys
}

// Column returns the index of the named column, or -1.
func (r *Relation) Column(name string) int {
	for i, c := range r.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}
