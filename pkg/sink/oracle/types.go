package oracle

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/cdcd-io/cdcd/pkg/schema"
)

// ddlType returns the Oracle column type for a PostgreSQL type as
// format_type writes it with its modifier ("numeric(12,2)", "character
// varying(20)", "timestamp(3) with time zone", "integer[]"), on an Oracle
// server of major version major. The mapping (README, "Oracle sink"):
//
//	smallint, integer, bigint, oid   NUMBER(5), NUMBER(10), NUMBER(19), NUMBER(10)
//	numeric(p,s), p ≤ 38             NUMBER(p,s)
//	numeric(p,s), p > 38             VARCHAR2(p+2): NUMBER holds 38 digits, text keeps every one
//	numeric                          NUMBER (a value beyond 38 digits, NaN or ±Infinity is an error naming it)
//	real, double precision           BINARY_FLOAT, BINARY_DOUBLE (NaN and ±Infinity kept)
//	boolean                          NUMBER(1) (0/1); BOOLEAN on 23ai and later
//	character(n), varchar(n)         CHAR(n CHAR), VARCHAR2(n CHAR) up to 1000 characters (4000 bytes); CLOB above
//	text, varchar, json              CLOB (json keeps its exact text)
//	jsonb                            JSON on 21c and later, CLOB before
//	bytea                            BLOB
//	uuid                             RAW(16)
//	date                             DATE
//	timestamp(p)                     TIMESTAMP(p)
//	timestamp(p) with time zone      TIMESTAMP(p) WITH TIME ZONE
//	time(p)                          INTERVAL DAY(1) TO SECOND(p) (time since midnight; 24:00:00 is one day)
//	interval year/month fields       INTERVAL YEAR(9) TO MONTH
//	interval day…second fields       INTERVAL DAY(9) TO SECOND(p)
//	interval                         VARCHAR2(100) (months, days and seconds are not one Oracle INTERVAL)
//	name, "char", pg_lsn             VARCHAR2(63 BYTE), VARCHAR2(4 BYTE), VARCHAR2(17 BYTE)
//	enums                            VARCHAR2(63 BYTE)
//	inet, cidr, macaddr(8), money,
//	timetz, bit(n)                   VARCHAR2(…) holding the PostgreSQL text form
//	everything else (arrays, ranges, geometry, xml, tsvector, composites, varbit, jsonpath)
//	                                 CLOB holding the PostgreSQL text form
func ddlType(pgType string, major int) string {
	base, mods := splitMods(pgType)
	if strings.HasSuffix(pgType, "[]") {
		return "CLOB"
	}
	switch base {
	case "smallint":
		return "NUMBER(5)"
	case "integer", "oid":
		return "NUMBER(10)"
	case "bigint":
		return "NUMBER(19)"
	case "numeric":
		if len(mods) == 0 {
			return "NUMBER"
		}
		p := mods[0]
		s := 0
		if len(mods) > 1 {
			s = mods[1]
		}
		if p > 38 || s < -84 || s > 127 {
			return fmt.Sprintf("VARCHAR2(%d)", p+3) // sign, point, one spare
		}
		return fmt.Sprintf("NUMBER(%d,%d)", p, s)
	case "real":
		return "BINARY_FLOAT"
	case "double precision":
		return "BINARY_DOUBLE"
	case "boolean":
		if major >= 23 {
			return "BOOLEAN"
		}
		return "NUMBER(1)"
	case "character", "bpchar":
		n := 1
		if len(mods) > 0 {
			n = mods[0]
		}
		if n <= 500 {
			return fmt.Sprintf("CHAR(%d CHAR)", n)
		}
		return "CLOB"
	case "character varying":
		if len(mods) > 0 && mods[0] <= 1000 {
			return fmt.Sprintf("VARCHAR2(%d CHAR)", mods[0])
		}
		return "CLOB"
	case "text", "json", "xml":
		return "CLOB"
	case "jsonb":
		if major >= 21 {
			return "JSON"
		}
		return "CLOB"
	case "bytea":
		return "BLOB"
	case "uuid":
		return "RAW(16)"
	case "date":
		return "DATE"
	case "timestamp without time zone", "timestamp with time zone":
		p := 6
		if len(mods) > 0 {
			p = mods[0]
		}
		if strings.Contains(pgType, "with time zone") {
			return fmt.Sprintf("TIMESTAMP(%d) WITH TIME ZONE", p)
		}
		return fmt.Sprintf("TIMESTAMP(%d)", p)
	case "time without time zone":
		p := 6
		if len(mods) > 0 {
			p = mods[0]
		}
		return fmt.Sprintf("INTERVAL DAY(1) TO SECOND(%d)", p) // 24:00:00 is a day
	case "interval":
		return intervalType(pgType)
	case "name":
		return "VARCHAR2(63 BYTE)"
	case `"char"`:
		return "VARCHAR2(4 BYTE)"
	case "pg_lsn":
		return "VARCHAR2(17 BYTE)"
	case "inet", "cidr":
		return "VARCHAR2(43 BYTE)"
	case "macaddr", "macaddr8":
		return "VARCHAR2(23 BYTE)"
	case "money":
		return "VARCHAR2(32 CHAR)"
	case "time with time zone":
		return "VARCHAR2(32 BYTE)"
	case "bit":
		if len(mods) > 0 && mods[0] <= 4000 {
			return fmt.Sprintf("VARCHAR2(%d BYTE)", mods[0])
		}
	}
	return "CLOB"
}

// intervalType maps interval and its field-restricted forms.
func intervalType(pgType string) string {
	fields := strings.TrimSpace(strings.TrimPrefix(pgType, "interval"))
	p := 6
	if _, mods := splitMods(pgType); len(mods) > 0 {
		p = mods[0]
	}
	switch {
	case fields == "" || strings.HasPrefix(fields, "("):
		return "VARCHAR2(100 BYTE)"
	case strings.HasPrefix(fields, "year") || fields == "month":
		return "INTERVAL YEAR(9) TO MONTH"
	}
	return fmt.Sprintf("INTERVAL DAY(9) TO SECOND(%d)", p)
}

var modsRE = regexp.MustCompile(`\(([-0-9, ]+)\)`)

// splitMods splits "numeric(12,2)" into "numeric" and [12 2]; a modifier
// inside ("timestamp(3) with time zone") is removed from the base name.
func splitMods(t string) (string, []int) {
	m := modsRE.FindStringSubmatchIndex(t)
	if m == nil {
		return t, nil
	}
	var mods []int
	for _, f := range strings.Split(t[m[2]:m[3]], ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return t, nil
		}
		mods = append(mods, n)
	}
	base := strings.TrimSpace(t[:m[0]] + t[m[1]:])
	base = strings.Join(strings.Fields(base), " ")
	return base, mods
}

// columnType resolves a schema column to its Oracle type: domains map as
// their base type, enums as text.
func columnType(t *schema.Table, c schema.Column, major int) string {
	for _, ty := range t.Types {
		q := ty.Name.String()
		if c.Type != q && c.Type != quoteSchemaName(ty.Name) {
			if strings.HasSuffix(c.Type, "[]") && (strings.TrimSuffix(c.Type, "[]") == q || strings.TrimSuffix(c.Type, "[]") == quoteSchemaName(ty.Name)) {
				return "CLOB"
			}
			continue
		}
		if ty.Kind == 'e' {
			return "VARCHAR2(63 BYTE)"
		}
		if ty.Kind == 'd' {
			for _, base := range t.Types { // a domain over an enum
				if base.Kind == 'e' && (ty.Base == base.Name.String() || ty.Base == quoteSchemaName(base.Name)) {
					return "VARCHAR2(63 BYTE)"
				}
			}
			return ddlType(ty.Base, major)
		}
	}
	return ddlType(c.Type, major)
}

func quoteSchemaName(n schema.Name) string {
	return `"` + strings.ReplaceAll(n.Schema, `"`, `""`) + `"."` + strings.ReplaceAll(n.Name, `"`, `""`) + `"`
}
