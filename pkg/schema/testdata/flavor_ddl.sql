-- aurora-dsql: shop.orders, one statement per transaction
CREATE SCHEMA IF NOT EXISTS "shop";
CREATE TABLE "shop"."orders" ("tenant_id" bigint NOT NULL, "id" integer NOT NULL, "total" numeric(1000,500) DEFAULT 0, "status" text, "meta" text, "Placed At" timestamp with time zone DEFAULT '2024-01-01 00:00:00+00'::timestamp with time zone, PRIMARY KEY ("tenant_id", "id"));

-- citus: shop.orders distributed by its first key column
SELECT create_distributed_table('"shop"."orders"', 'tenant_id', colocate_with => 'default');
SELECT create_distributed_table('"shop"."orders"', 'tenant_id', colocate_with => 'shop.customers');

-- citus: public.countries as a reference table
SELECT create_reference_table('"public"."countries"');
