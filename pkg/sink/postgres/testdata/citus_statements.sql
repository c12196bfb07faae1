-- delete
DELETE FROM "shop"."order_lines" AS t WHERE t."tenant_id" = CAST($1::text AS bigint) AND t."id" = CAST($2::text AS integer);

-- upsert
INSERT INTO "shop"."order_lines" AS t ("tenant_id", "id", "sku", "qty", "Note") OVERRIDING SYSTEM VALUE VALUES (CAST($1::text AS bigint), CAST($2::text AS integer), CAST($3::text AS text), CAST($4::text AS numeric), CAST($5::text AS character varying)) ON CONFLICT ("tenant_id", "id") DO UPDATE SET "sku" = EXCLUDED."sku", "qty" = EXCLUDED."qty", "Note" = EXCLUDED."Note";

-- update qty
UPDATE "shop"."order_lines" AS t SET "qty" = CAST($3::text AS numeric) WHERE t."tenant_id" = CAST($1::text AS bigint) AND t."id" = CAST($2::text AS integer);

-- update sku, Note
UPDATE "shop"."order_lines" AS t SET "sku" = CAST($3::text AS text), "Note" = CAST($4::text AS character varying) WHERE t."tenant_id" = CAST($1::text AS bigint) AND t."id" = CAST($2::text AS integer);

-- upsert, every column a key column
INSERT INTO "shop"."tags" AS t ("tenant_id", "tag") OVERRIDING SYSTEM VALUE VALUES (CAST($1::text AS bigint), CAST($2::text AS text)) ON CONFLICT ("tenant_id", "tag") DO NOTHING;

