// Package typezoo is the test fixture of ~55 PostgreSQL types that every
// path carrying row values is checked against (sources, sinks, snapshot):
// one table, zoo, with a column of each type, and rows of edge values
// written in a session whose output settings differ from every setting cdcd
// pins, so a test shows values do not depend on the writer's session.
package typezoo

// DDL creates the zoo's enum, domains and composite type and table zoo
// (the PostgreSQL sink's and the snapshot's zoos plus geometry, ranges, bit
// strings, money, xml and a composite); its big column is stored out of
// line, so a large value is a real TOAST value.
const DDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN goodmood AS mood CHECK (VALUE <> 'sad');
CREATE TYPE pair AS (a int, b text);
CREATE TABLE zoo (
  id int8 PRIMARY KEY, kind text,
  i2 int2, i4 int4, i8 int8, num numeric, numf numeric(40,10), r float4, d float8,
  b bool, ch char(5), vc varchar(20), t text, nm name, "char" "char", by bytea,
  dt date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j json, jb jsonb, jp jsonpath, x xml, ip inet, net cidr, mac macaddr, mac8 macaddr8,
  bits bit(4), vb varbit, money money, pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
  tsv tsvector, tsq tsquery, i4r int4range, tsr tstzrange, nr numrange, mr int4multirange,
  ia int[], ta text[], ia2 int[][], m mood, ma mood[], p posint, g goodmood, pr pair, pra pair[],
  o oid, lsn pg_lsn, "Mixed Case ""col""" text, big text);
ALTER TABLE zoo ALTER COLUMN big SET STORAGE EXTERNAL`

// Rows sets odd session settings, then inserts rows 1 (extremes), 2
// (negatives and empties), 3 (NULLs) and 4 (TOAST-sized values), in one
// session.
var Rows = []string{
	`SET datestyle = 'SQL, DMY'; SET intervalstyle = 'sql_standard'; SET extra_float_digits = 0;
	 SET bytea_output = 'escape'; SET timezone = 'Asia/Kolkata'`,
	`INSERT INTO zoo VALUES (1, 'extremes',
	  -32768, 2147483647, 9223372036854775807, 'NaN', '123456789012345678901234567890.0123456789', '-0', 'Infinity',
	  true, 'ab', 'vc', E'tëxt ''q'' "dq" \\ back\ttab\nnl (paren), comma', 'name', 'x', '\x00ff10',
	  '2024-02-29', '13:14:15.123456', '13:14:15+05:30', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+02',
	  '1 year 2 mons -3 days 04:05:06.789',
	  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50, "x"],   "spaces" : true}', '{"b": 1e400, "a": [1, 2.50]}',
	  '$.a[*] ? (@ > 1)', '<r a="1">x &amp; y</r>', '10.0.0.1', '10.1.0.0/16', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
	  B'1010', B'110', 1234.56, '(1.5,-2)', '{1,2,3}', '[(0,0),(1,1)]', '((0,0),(2,2))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(1,1),5>',
	  to_tsvector('english', 'the quick brown fox'), 'fox & !dog', '[1,10)', '[2024-01-01 00:00+00,infinity)', '(,5.5]', '{[1,3), [5,7)}',
	  '{1,NULL,3}', '{"a b",NULL,"q\"z","b\\c","",NULL}', '{{1,2},{3,4}}', 'it''s', '{sad,happy}', 5, 'happy', '(1,"x, y")', ARRAY['(2,)'::pair, '(,"")'::pair],
	  4294967295, '16/B374D848', 'mixed', repeat(md5('a'), 8000))`,
	`INSERT INTO zoo VALUES (2, 'negatives',
	  0, -1, -9223372036854775808, '-0.000000001', '-1e-10', 'NaN', '-Infinity',
	  false, '     ', '', '', '', ' ', '\x',
	  '4713-01-01 BC', '24:00:00', '00:00:00-15:59', 'infinity', '-infinity', '-178956970 years -8 mons -2147483648 days -04:05:06.000001',
	  '00000000-0000-0000-0000-000000000000', '"just a string"', 'null', '$', '<e/>', '::1', '::/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00',
	  B'0000', B'', -0.01, '(NaN,Infinity)', '{1,-1,0}', '[(1e-300,1e300),(0,0)]', '((0,0),(0,0))', '((0,0))', '((0,0))', '<(0,0),0>',
	  '', '!a', 'empty', 'empty', 'empty', '{}',
	  '{}', '{}', '{}', 'sad', '{}', 1, 'ok', '(,)', '{}',
	  0, '0/0', '', '')`,
	`INSERT INTO zoo (id, kind) VALUES (3, NULL)`,
	`INSERT INTO zoo SELECT 4, 'toast', i2, i4, i8, num, numf, r, d, b, ch, vc, t, nm, "char", decode(repeat(md5('b'), 9000), 'hex'),
	   dt, tm, ttz, ts, tstz, iv, u, j, jb, jp, x, ip, net, mac, mac8, bits, vb, money, pt, ln, ls, bx, pa, pg, ci,
	   tsv, tsq, i4r, tsr, nr, mr, ia, ta, ia2, m, ma, p, g, pr, pra, o, lsn, "Mixed Case ""col""",
	   (SELECT string_agg(md5(g::text), ' ') FROM generate_series(1, 10000) g) FROM zoo WHERE id = 1`,
}
