-- Rewrite corpus: see README.md in this directory for the format and the markers.

-- ===== Django =====================================================================

-- name: django_get_by_pk
-- params: int8:2
SELECT {Q}."id", {Q}."model_name", {Q}."model_version", {Q}."hyperparameters", {Q}."created_at" FROM {Q} WHERE {Q}."id" = $1 LIMIT 21

-- name: django_filter_order_slice
-- params: text:resnet
SELECT {Q}."id", {Q}."model_version" FROM {Q} WHERE {Q}."model_name" = $1 ORDER BY {Q}."created_at" DESC LIMIT 10 OFFSET 0

-- name: django_count
SELECT COUNT(*) AS "__count" FROM {Q}

-- name: django_exists
-- params: text:bert
SELECT 1 AS "a" FROM {Q} WHERE {Q}."model_name" = $1 LIMIT 1

-- name: django_insert_returning_id
-- params: text:vit | text:1.0 | jsonb:{"patch": 16}
INSERT INTO {Q} ("model_name", "model_version", "hyperparameters", "created_at") VALUES ($1, $2, $3, '2024-06-01T00:00:00+00:00'::timestamptz) RETURNING {Q}."id"

-- name: django_bulk_create
INSERT INTO {Q} ("model_name", "model_version", "hyperparameters", "created_at") VALUES ('a', '1', '{}'::jsonb, '2024-06-01T00:00:00+00:00'::timestamptz), ('b', '2', '{"x": 1}'::jsonb, '2024-06-02T00:00:00+00:00'::timestamptz) RETURNING {Q}."id", {Q}."model_name"

-- name: django_update_by_pk
-- params: text:1.1 | int8:1
UPDATE {Q} SET "model_version" = $1 WHERE {Q}."id" = $2

-- name: django_delete_in
DELETE FROM {Q} WHERE {Q}."id" IN (3, 4)

-- name: django_values_list_distinct
SELECT DISTINCT {Q}."model_name" FROM {Q} ORDER BY {Q}."model_name" ASC

-- name: django_jsonb_has_key
-- params: text:layers
SELECT {Q}."id" FROM {Q} WHERE ({Q}."hyperparameters" ? $1) ORDER BY {Q}."id" ASC

-- name: django_jsonb_contains
-- params: jsonb:{"lr": 0.1}
SELECT {Q}."id", {Q}."model_name" FROM {Q} WHERE {Q}."hyperparameters" @> $1 ORDER BY {Q}."id"

-- name: django_key_transform
SELECT {Q}."id", ({Q}."hyperparameters" -> 'lr') AS "lr" FROM {Q} WHERE ({Q}."hyperparameters" -> 'lr') IS NOT NULL ORDER BY {Q}."id"

-- name: django_aggregate_group_by
SELECT {Q}."model_name", COUNT({Q}."id") AS "n", MAX({Q}."model_version") AS "latest" FROM {Q} GROUP BY {Q}."model_name" HAVING COUNT({Q}."id") >= 1 ORDER BY {Q}."model_name"

-- name: django_join_unmanaged
SELECT "deployments"."env", {Q}."model_name" FROM "deployments" INNER JOIN {Q} ON ("deployments"."model_id" = {Q}."id") WHERE "deployments"."replicas" > 1 ORDER BY "deployments"."id"

-- name: django_subquery_in
SELECT "deployments"."id" FROM "deployments" WHERE "deployments"."model_id" IN (SELECT U0."id" FROM {Q} U0 WHERE U0."model_name" = 'bert') ORDER BY 1

-- name: django_exists_subquery
SELECT {Q}."id", EXISTS(SELECT 1 AS "a" FROM "deployments" U0 WHERE U0."model_id" = ({Q}."id") LIMIT 1) AS "deployed" FROM {Q} ORDER BY {Q}."id"

-- name: django_select_for_update_skip_locked
SELECT {Q}."id" FROM {Q} WHERE {Q}."model_name" = 'resnet' ORDER BY {Q}."id" FOR UPDATE SKIP LOCKED

-- name: django_get_or_create_savepoint
-- params: text:resnet | text:1.0
SELECT {Q}."id", {Q}."model_name" FROM {Q} WHERE ({Q}."model_name" = $1 AND {Q}."model_version" = $2) LIMIT 21

-- name: django_window_row_number
SELECT "col1", "col2" FROM (SELECT {Q}."model_name" AS "col1", ROW_NUMBER() OVER (PARTITION BY {Q}."model_name" ORDER BY {Q}."id" DESC) AS "col2" FROM {Q}) "qualify" WHERE "col2" = 1 ORDER BY 1

-- name: django_paginator_count_over
SELECT {Q}."id", COUNT(*) OVER () AS "total" FROM {Q} ORDER BY {Q}."id" LIMIT 2 OFFSET 2

-- name: django_case_when
SELECT {Q}."id", CASE WHEN {Q}."model_name" = 'resnet' THEN 'vision' WHEN {Q}."model_name" IN ('bert', 'gpt') THEN 'nlp' ELSE 'other' END AS "family" FROM {Q} ORDER BY {Q}."id"

-- name: django_upsert_on_conflict
INSERT INTO {Q} ("id", "model_name", "model_version", "hyperparameters", "created_at") VALUES (1, 'resnet', '9.9', '{}'::jsonb, '2024-01-01T00:00:00+00:00'::timestamptz) ON CONFLICT("id") DO UPDATE SET "model_version" = EXCLUDED."model_version" RETURNING {Q}."id", {Q}."model_version"
-- hand v2:
INSERT INTO public.model_metadata AS "model_metadata" ("id", "model_name", "model_version", "hyperparameters", "created_at") VALUES (1, 'resnet', '9.9', '{}'::jsonb, '2024-01-01T00:00:00+00:00'::timestamptz) ON CONFLICT ("id") DO UPDATE SET "model_version" = EXCLUDED."model_version" RETURNING "model_metadata"."id", "model_metadata"."model_version"

-- name: django_introspect_columns_regclass
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = {R}::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum

-- ===== SQLAlchemy =================================================================

-- name: sqlalchemy_get
-- params: int8:1
SELECT {N}.id AS model_metadata_id, {N}.model_name AS model_metadata_model_name, {N}.model_version AS model_metadata_model_version FROM {N} WHERE {N}.id = $1

-- name: sqlalchemy_select_in_any
-- params: int8[]:1,2,5
SELECT {N}.id, {N}.model_name FROM {N} WHERE {N}.id = ANY($1) ORDER BY {N}.id

-- name: sqlalchemy_expanding_in
-- params: text:resnet | text:gpt
SELECT {N}.id FROM {N} WHERE {N}.model_name IN ($1, $2) ORDER BY {N}.id

-- name: sqlalchemy_any_array_literal
SELECT {N}.model_name FROM {N} WHERE {N}.model_version = ANY(ARRAY['1.0', '2.0']) ORDER BY {N}.id

-- name: sqlalchemy_insert_returning
-- params: text:t5 | text:1.0
INSERT INTO {N} (model_name, model_version, created_at) VALUES ($1, $2, '2024-06-01 00:00:00+00') RETURNING {N}.id

-- name: sqlalchemy_insertmanyvalues
INSERT INTO {N} (model_name, model_version, hyperparameters, created_at) SELECT p0::TEXT, p1::TEXT, p2::JSONB, '2024-06-01 00:00:00+00' FROM (VALUES ('m1', '1', '{}', 0), ('m2', '2', '{"a": 1}', 1)) AS imp_sen(p0, p1, p2, sen_counter) ORDER BY sen_counter RETURNING {N}.id, {N}.model_name

-- name: sqlalchemy_update_returning
-- params: text:2.1 | text:bert
UPDATE {N} SET model_version=$1 WHERE {N}.model_name = $2 RETURNING {N}.id, {N}.model_version

-- name: sqlalchemy_delete_returning
-- params: int8:6
DELETE FROM {N} WHERE {N}.id = $1 RETURNING {N}.id, {N}.model_name

-- name: sqlalchemy_aliased_self_join
SELECT model_metadata_1.id, model_metadata_2.id AS id_1 FROM {N} AS model_metadata_1 JOIN {N} AS model_metadata_2 ON model_metadata_1.model_name = model_metadata_2.model_name AND model_metadata_1.id < model_metadata_2.id ORDER BY 1, 2

-- name: sqlalchemy_outer_join_unmanaged
SELECT {N}.model_name, deployments.env FROM {N} LEFT OUTER JOIN deployments ON {N}.id = deployments.model_id ORDER BY {N}.id, deployments.env NULLS LAST

-- name: sqlalchemy_cte
WITH latest AS (SELECT {N}.model_name AS model_name, max({N}.created_at) AS max_created FROM {N} GROUP BY {N}.model_name) SELECT {N}.id, {N}.model_name FROM {N} JOIN latest ON {N}.model_name = latest.model_name AND {N}.created_at = latest.max_created ORDER BY {N}.id

-- name: sqlalchemy_scalar_subquery
SELECT deployments.id, (SELECT {N}.model_name FROM {N} WHERE {N}.id = deployments.model_id) AS anon_1 FROM deployments ORDER BY deployments.id

-- name: sqlalchemy_union
SELECT {N}.model_name FROM {N} WHERE {N}.id < 3 UNION SELECT {N}.model_name FROM {N} WHERE {N}.id > 4 ORDER BY 1

-- name: sqlalchemy_union_all_except
(SELECT {N}.id FROM {N} UNION ALL SELECT deployments.model_id FROM deployments) EXCEPT SELECT 7 ORDER BY 1

-- name: sqlalchemy_intersect
SELECT {N}.id FROM {N} INTERSECT SELECT deployments.model_id FROM deployments ORDER BY 1

-- name: sqlalchemy_distinct_on
SELECT DISTINCT ON ({N}.model_name) {N}.model_name, {N}.model_version FROM {N} ORDER BY {N}.model_name, {N}.created_at DESC

-- name: sqlalchemy_lateral
SELECT deployments.env, anon_1.model_name FROM deployments, LATERAL (SELECT {N}.model_name AS model_name FROM {N} WHERE {N}.id = deployments.model_id) AS anon_1 ORDER BY deployments.id

-- name: sqlalchemy_json_getitem
SELECT {N}.id, {N}.hyperparameters ->> 'lr' AS lr FROM {N} WHERE CAST({N}.hyperparameters ->> 'lr' AS FLOAT) > 0.01 ORDER BY {N}.id

-- name: sqlalchemy_json_path
SELECT {N}.id, {N}.hyperparameters #>> '{tags,0}' AS first_tag FROM {N} WHERE {N}.hyperparameters #> '{tags}' IS NOT NULL

-- name: sqlalchemy_nulls_last
SELECT {N}.id FROM {N} ORDER BY {N}.hyperparameters ->> 'depth' DESC NULLS LAST, {N}.id

-- name: sqlalchemy_has_table
-- params: text:model_metadata | text:public
SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relname = $1::VARCHAR AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_namespace.nspname = $2::VARCHAR
-- hand:
SELECT pg_class.relname FROM viewgate_catalog_{V}.pg_class AS pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_class.relnamespace WHERE pg_class.relname = $1::VARCHAR AND pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_namespace.nspname = $2::VARCHAR

-- name: sqlalchemy_reflect_columns
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS format_type, a.attnotnull AS not_null FROM pg_catalog.pg_attribute AS a WHERE a.attrelid = {RP}::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
-- hand:
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS format_type, a.attnotnull AS not_null FROM viewgate_catalog_{V}.pg_attribute AS a WHERE a.attrelid = 'public.model_metadata_{V}'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum

-- name: sqlalchemy_count_subquery
SELECT count(*) AS count_1 FROM (SELECT {N}.id AS model_metadata_id FROM {N} WHERE {N}.model_name LIKE 'res%') AS anon_1

-- name: sqlalchemy_exists_where
SELECT deployments.id FROM deployments WHERE EXISTS (SELECT * FROM {N} WHERE {N}.id = deployments.model_id AND {N}.model_name = 'bert') ORDER BY deployments.id

-- name: sqlalchemy_not_exists
SELECT deployments.id FROM deployments WHERE NOT (EXISTS (SELECT 1 FROM {N} WHERE {N}.id = deployments.model_id)) ORDER BY deployments.id

-- name: sqlalchemy_with_for_update_of
SELECT {N}.id FROM {N} WHERE {N}.id = 1 FOR UPDATE OF {N}

-- name: sqlalchemy_for_no_key_update
SELECT {N}.id FROM {N} WHERE {N}.id = 2 FOR NO KEY UPDATE

-- name: sqlalchemy_for_share_nowait
SELECT {N}.id FROM {N} WHERE {N}.id = 2 FOR SHARE NOWAIT

-- name: sqlalchemy_update_from_unmanaged
UPDATE {N} SET model_version=(deployments.env || '-' || {N}.model_version) FROM deployments WHERE {N}.id = deployments.model_id AND deployments.env = 'staging' RETURNING {N}.id, {N}.model_version

-- name: sqlalchemy_delete_using_unmanaged
DELETE FROM {N} USING deployments WHERE {N}.id = deployments.model_id AND deployments.env = 'dev' RETURNING {N}.id

-- ===== ActiveRecord ===============================================================

-- name: activerecord_find
-- params: int8:3 | int8:1
SELECT {Q}.* FROM {Q} WHERE {Q}."id" = $1 LIMIT $2

-- name: activerecord_where_order_limit
-- params: text:resnet | int8:11
SELECT {Q}.* FROM {Q} WHERE {Q}."model_name" = $1 ORDER BY {Q}."id" ASC LIMIT $2

-- name: activerecord_find_each_batches
-- params: int8:2 | int8:1000
SELECT {Q}."id" FROM {Q} WHERE {Q}."id" > $1 ORDER BY {Q}."id" ASC LIMIT $2

-- name: activerecord_pluck
SELECT {Q}."model_name", {Q}."model_version" FROM {Q} ORDER BY {Q}."id"

-- name: activerecord_insert
-- params: text:yolo | text:8 | jsonb:{} | text:2024-06-01 00:00:00
INSERT INTO {Q} ("model_name", "model_version", "hyperparameters", "created_at") VALUES ($1, $2, $3, ($4::text)::timestamptz) RETURNING "id"

-- name: activerecord_insert_all_on_conflict_do_nothing
INSERT INTO {Q} ("id","model_name","model_version","created_at") VALUES (1, 'dup', '1', '2024-06-01'), (50, 'new', '1', '2024-06-01') ON CONFLICT ("id") DO NOTHING RETURNING "id"
-- hand v2:
INSERT INTO public.model_metadata ("id","model_name","model_version","created_at") VALUES (1, 'dup', '1', '2024-06-01'), (50, 'new', '1', '2024-06-01') ON CONFLICT ("id") DO NOTHING RETURNING "id"

-- name: activerecord_upsert_all
INSERT INTO {Q} AS {Q} ("id","model_name","model_version","created_at") VALUES (2, 'bert', '2.5', '2024-02-01'), (60, 'new', '1', '2024-06-01') ON CONFLICT ("id") DO UPDATE SET "model_version"=excluded."model_version" RETURNING "id"
-- hand v2:
INSERT INTO public.model_metadata AS "model_metadata" ("id","model_name","model_version","created_at") VALUES (2, 'bert', '2.5', '2024-02-01'), (60, 'new', '1', '2024-06-01') ON CONFLICT ("id") DO UPDATE SET "model_version"=excluded."model_version" RETURNING "id"

-- name: hand_upsert_returning_the_computed_column
-- errors: v1
INSERT INTO {T} (id, model_name, model_version) VALUES (1, 'resnet', '1.1'), (70, 'new', '1') ON CONFLICT (id) DO UPDATE SET model_version = EXCLUDED.model_version RETURNING id, model_type, model_metadata.model_version
-- hand v2:
INSERT INTO public.model_metadata AS model_metadata (id, model_name, model_version) VALUES (1, 'resnet', '1.1'), (70, 'new', '1') ON CONFLICT (id) DO UPDATE SET model_version = EXCLUDED.model_version RETURNING id, COALESCE(model_type, 'neural_network') AS model_type, model_metadata.model_version

-- name: hand_upsert_do_nothing_without_a_target
INSERT INTO {N} (id, model_name, model_version) VALUES (3, 'dup', '1'), (71, 'n', '1') ON CONFLICT DO NOTHING RETURNING id
-- hand v2:
INSERT INTO public.model_metadata (id, model_name, model_version) VALUES (3, 'dup', '1'), (71, 'n', '1') ON CONFLICT DO NOTHING RETURNING id

-- name: hand_upsert_model_type_from_excluded
-- errors: v1
INSERT INTO {N} AS m (id, model_name, model_version, model_type) VALUES (2, 'bert', '2.0', 'encoder') ON CONFLICT (id) DO UPDATE SET model_type = EXCLUDED.model_type RETURNING m.*
-- hand v2:
INSERT INTO public.model_metadata AS m (id, model_name, model_version, model_type) VALUES (2, 'bert', '2.0', 'encoder') ON CONFLICT (id) DO UPDATE SET model_type = EXCLUDED.model_type RETURNING m.id, m.model_name, m.model_version, COALESCE(m.model_type, 'neural_network') AS model_type, m.hyperparameters, m.created_at, m.schema_version

-- name: activerecord_update
-- params: text:3.6 | int8:3
UPDATE {Q} SET "model_version" = $1 WHERE {Q}."id" = $2

-- name: activerecord_update_all_subquery
UPDATE {Q} SET "model_version" = 'archived' WHERE {Q}."id" IN (SELECT {Q}."id" FROM {Q} WHERE {Q}."created_at" < '2024-03-01' ORDER BY {Q}."id" LIMIT 2)

-- name: activerecord_destroy
-- params: int8:5
DELETE FROM {Q} WHERE {Q}."id" = $1

-- name: activerecord_exists
-- params: int8:1
SELECT 1 AS one FROM {Q} WHERE {Q}."model_name" = 'gpt' LIMIT $1

-- name: activerecord_count_distinct
SELECT COUNT(DISTINCT {Q}."model_name") FROM {Q}

-- name: activerecord_group_count
SELECT COUNT(*) AS "count_all", {Q}."model_name" AS "model_metadata_model_name" FROM {Q} GROUP BY {Q}."model_name" ORDER BY "model_metadata_model_name"

-- name: activerecord_joins_unmanaged
SELECT {Q}.* FROM {Q} INNER JOIN "deployments" ON "deployments"."model_id" = {Q}."id" WHERE "deployments"."env" = 'prod' ORDER BY {Q}."id"

-- name: activerecord_includes_preload
-- params: int8[]:1,2,4
SELECT "deployments".* FROM "deployments" WHERE "deployments"."model_id" = ANY($1) ORDER BY "deployments"."id"

-- name: activerecord_eager_load_in
SELECT {Q}.* FROM {Q} WHERE {Q}."id" IN (1, 2, 4) ORDER BY {Q}."id"

-- name: activerecord_lock
SELECT {Q}.* FROM {Q} WHERE {Q}."id" = 4 LIMIT 1 FOR UPDATE

-- name: activerecord_introspect_attributes
SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod, c.collname, col_description(a.attrelid, a.attnum) AS comment FROM pg_attribute a LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum LEFT JOIN pg_type t ON a.atttypid = t.oid LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation WHERE a.attrelid = {RQ}::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
-- hand:
SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod, c.collname, col_description(a.attrelid, a.attnum) AS comment FROM viewgate_catalog_{V}.pg_attribute a LEFT JOIN viewgate_catalog_{V}.pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum LEFT JOIN viewgate_catalog_{V}.pg_type t ON a.atttypid = t.oid LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation WHERE a.attrelid = '"model_metadata_{V}"'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum

-- name: activerecord_primary_keys
SELECT a.attname FROM (SELECT indrelid, indkey, generate_subscripts(indkey, 1) idx FROM pg_index WHERE indrelid = {RQ}::regclass AND indisprimary) i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[i.idx] ORDER BY i.idx
-- hand:
SELECT a.attname FROM (SELECT indrelid, indkey, generate_subscripts(indkey, 1) idx FROM viewgate_catalog_{V}.pg_index AS pg_index WHERE indrelid = '"model_metadata_{V}"'::regclass AND indisprimary) i JOIN viewgate_catalog_{V}.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[i.idx] ORDER BY i.idx

-- name: activerecord_table_exists_by_name
SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) AND c.relname = 'model_metadata' AND c.relkind IN ('r','p')
-- hand:
SELECT c.relname FROM viewgate_catalog_{V}.pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) AND c.relname = 'model_metadata' AND c.relkind IN ('r','p')

-- name: activerecord_optimistic_lock_update
UPDATE {Q} SET "model_version" = '1.2' WHERE {Q}."id" = 1 AND {Q}."model_version" = '1.0'

-- ===== Prisma =====================================================================

-- name: prisma_find_unique
-- params: int8:2 | int8:1 | int8:0
SELECT {PQ}."id", {PQ}."model_name", {PQ}."model_version", {PQ}."hyperparameters" FROM {PQ} WHERE ({PQ}."id" = $1 AND 1=1) LIMIT $2 OFFSET $3

-- name: prisma_find_many_order
-- params: text:res | int8:10 | int8:0
SELECT {PQ}."id", {PQ}."model_name" FROM {PQ} WHERE {PQ}."model_name"::text LIKE $1 || '%' ORDER BY {PQ}."created_at" DESC LIMIT $2 OFFSET $3

-- name: prisma_create
-- params: text:clip | text:1.0 | jsonb:{"dim": 512} | text:2024-06-01T00:00:00Z
INSERT INTO {PQ} ("model_name","model_version","hyperparameters","created_at") VALUES ($1,$2,$3,($4::text)::timestamptz) RETURNING {PQ}."id", {PQ}."model_name", {PQ}."model_version", {PQ}."hyperparameters", {PQ}."created_at"

-- name: prisma_update_many
-- params: text:2.2 | text:transformer%
UPDATE {PQ} SET "model_version" = $1 WHERE {PQ}."model_name"::text LIKE $2 OR {PQ}."id" = 2

-- name: prisma_update_returning
-- params: text:3.9 | int8:3
UPDATE {PQ} SET "model_version" = $1 WHERE ({PQ}."id" = $2 AND 1=1) RETURNING {PQ}."id", {PQ}."model_version"

-- name: prisma_delete
-- params: int8:4
DELETE FROM {PQ} WHERE ({PQ}."id" = $1 AND 1=1)

-- name: prisma_count_aggregate
SELECT COUNT(*) AS "_count._all" FROM (SELECT {PQ}."id" FROM {PQ} WHERE 1=1 OFFSET 0) AS "sub"

-- name: prisma_json_path_filter
-- params: text:0.1
SELECT {PQ}."id" FROM {PQ} WHERE ({PQ}."hyperparameters"#>ARRAY['lr']::text[])::jsonb::text = $1 ORDER BY {PQ}."id"

-- name: prisma_in_list
-- params: int8:1 | int8:3 | int8:5
SELECT {PQ}."id", {PQ}."model_name" FROM {PQ} WHERE {PQ}."id" IN ($1,$2,$3) ORDER BY {PQ}."id" ASC

-- name: prisma_relation_load
SELECT "public"."deployments"."id", "public"."deployments"."model_id" FROM "public"."deployments" WHERE "public"."deployments"."model_id" IN (SELECT {PQ}."id" FROM {PQ} WHERE {PQ}."model_name" = 'bert') ORDER BY "public"."deployments"."id"

-- name: prisma_distinct_group
SELECT {PQ}."model_name", COUNT({PQ}."id") AS "_count$id" FROM {PQ} WHERE 1=1 GROUP BY {PQ}."model_name" HAVING COUNT({PQ}."id") > 1 ORDER BY {PQ}."model_name"

-- name: prisma_upsert_select_then_insert
-- params: text:resnet
SELECT {PQ}."id" FROM {PQ} WHERE {PQ}."model_name" = $1 ORDER BY {PQ}."id"

-- ===== Hand-written application SQL ===============================================

-- name: plain_select_star
SELECT * FROM {T} ORDER BY id

-- name: plain_select_star_v2_columns
-- errors: v1
SELECT id, model_type, schema_version FROM {T} ORDER BY id

-- name: plain_alias
SELECT m.id, m.model_name FROM {N} m WHERE m.id BETWEEN 2 AND 4 ORDER BY m.id

-- name: plain_alias_as
SELECT mm.id FROM {N} AS mm WHERE mm.model_version LIKE '%.0' ORDER BY 1

-- name: qualified_keeps_alias
SELECT model_metadata.id, model_metadata.model_name FROM {T} WHERE model_metadata.id = 2

-- name: qualified_wildcard_with_alias_kept
SELECT model_metadata.* FROM {T} WHERE model_metadata.id <= 2 ORDER BY model_metadata.id

-- name: whole_row_reference
SELECT to_jsonb(model_metadata) - 'created_at' FROM {T} WHERE id = 2

-- name: uppercase_name
SELECT {U}.ID FROM {U} WHERE {U}.ID > 4 ORDER BY 1

-- name: schema_qualified
SELECT {P}.id FROM {P} WHERE {P}.model_name = 'gpt'

-- name: schema_qualified_aliased
SELECT m.id FROM {P} m ORDER BY m.id DESC LIMIT 3

-- name: comments_and_newlines
/* controller=models,action=index */
SELECT id, model_name -- the list page
FROM   {T}
WHERE  id > 1 /* pagination */
ORDER  BY id
LIMIT  3

-- name: jsonb_arrow_operators
SELECT id, hyperparameters -> 'lr', hyperparameters ->> 'layers', hyperparameters ? 'heads', hyperparameters ?| ARRAY['eta', 'depth'], hyperparameters ?& ARRAY['lr'] FROM {T} ORDER BY id

-- name: jsonb_contained_by
SELECT id FROM {T} WHERE '{"lr": 0.1, "layers": 50, "x": 1}'::jsonb @> hyperparameters AND hyperparameters <> '{}' ORDER BY id

-- name: jsonb_set_update
UPDATE {T} SET hyperparameters = jsonb_set(hyperparameters, '{lr}', '0.2') WHERE hyperparameters ? 'lr' RETURNING id, hyperparameters

-- name: jsonb_concat_update
-- params: jsonb:{"tuned": true} | int8:4
UPDATE {T} SET hyperparameters = hyperparameters || $1 WHERE id = $2 RETURNING hyperparameters

-- name: jsonb_each_lateral
SELECT m.id, kv.key, kv.value FROM {N} m CROSS JOIN LATERAL jsonb_each(m.hyperparameters) AS kv ORDER BY m.id, kv.key

-- name: window_functions
SELECT id, model_name, rank() OVER w, lag(model_version) OVER w, sum(id) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM {T} WINDOW w AS (PARTITION BY model_name ORDER BY id) ORDER BY id

-- name: count_over_pagination
SELECT id, count(*) OVER () AS full_count FROM {T} WHERE id > 1 ORDER BY id LIMIT 2 OFFSET 1

-- name: distinct_on_latest
SELECT DISTINCT ON (model_name) model_name, id, created_at FROM {T} ORDER BY model_name, created_at DESC

-- name: group_by_having_case
SELECT model_name, count(*) FILTER (WHERE hyperparameters ? 'lr') AS with_lr, CASE WHEN count(*) > 1 THEN 'many' ELSE 'one' END FROM {T} GROUP BY model_name HAVING count(*) >= 1 ORDER BY model_name

-- name: casts
SELECT id::text, model_version::numeric, CAST(created_at AS date), hyperparameters::text FROM {T} ORDER BY id

-- name: nulls_first_last
SELECT id FROM {T} ORDER BY hyperparameters->>'heads' ASC NULLS FIRST, id DESC

-- name: limit_offset_fetch
SELECT id FROM {T} ORDER BY id OFFSET 1 ROWS FETCH FIRST 2 ROWS ONLY

-- name: cte_multiple
WITH names AS (SELECT DISTINCT model_name FROM {T}), counts AS (SELECT model_name, count(*) AS n FROM {T} GROUP BY model_name) SELECT names.model_name, counts.n FROM names JOIN counts USING (model_name) ORDER BY 1

-- name: cte_shadowing_table_name
WITH model_metadata AS (SELECT id, model_name FROM {T} WHERE id < 3) SELECT * FROM model_metadata ORDER BY id

-- name: cte_recursive
WITH RECURSIVE chain(id, depth) AS (SELECT id, 1 FROM {T} WHERE id = 1 UNION ALL SELECT m.id, c.depth + 1 FROM chain c JOIN {N} m ON m.id = c.id + 1 WHERE c.depth < 4) SELECT * FROM chain ORDER BY id

-- name: cte_data_modifying
WITH moved AS (UPDATE {T} SET model_version = 'retired' WHERE id = 6 RETURNING id, model_name) SELECT * FROM moved

-- name: cte_delete_then_insert
WITH gone AS (DELETE FROM {T} WHERE id = 5 RETURNING model_name, model_version, hyperparameters) INSERT INTO {T} (model_name, model_version, hyperparameters, created_at) SELECT model_name || '-copy', model_version, hyperparameters, '2024-06-01' FROM gone RETURNING id, model_name

-- name: insert_select_from_same_table
INSERT INTO {T} (model_name, model_version, hyperparameters, created_at) SELECT model_name, model_version || '-dup', hyperparameters, created_at FROM {N} src WHERE src.id <= 2 RETURNING id, model_version

-- name: insert_multi_row_values
INSERT INTO {T} (model_name, model_version, created_at) VALUES ('a', '1', '2024-06-01'), ('b', '2', '2024-06-02'), ('c', '3', '2024-06-03') RETURNING id, model_name

-- name: insert_default_values
-- errors: v1 v2
INSERT INTO {T} DEFAULT VALUES RETURNING id

-- name: insert_with_alias_returning_alias
INSERT INTO {N} AS m (model_name, model_version, created_at) VALUES ('al', '1', '2024-06-01') RETURNING m.id, m.model_name

-- name: insert_returning_qualified_star
INSERT INTO {T} (model_name, model_version, created_at) VALUES ('q', '1', '2024-06-01') RETURNING model_metadata.id, model_metadata.model_name

-- name: insert_v2_columns
-- errors: v1
INSERT INTO {T} (model_name, model_version, model_type, created_at) VALUES ('w2v', '1', 'embedding', '2024-06-01') RETURNING id, model_type, schema_version

-- name: insert_v2_null_type_reads_default
-- errors: v1
INSERT INTO {T} (model_name, model_version, created_at) VALUES ('nt', '1', '2024-06-01') RETURNING id, model_type

-- name: update_from_join
UPDATE {N} m SET model_version = d.env FROM deployments d WHERE d.model_id = m.id AND d.replicas = 3 RETURNING m.id, m.model_version

-- name: update_from_self
UPDATE {T} SET model_version = other.model_version FROM {N} other WHERE other.id = 2 AND model_metadata.id = 3 RETURNING model_metadata.id, model_metadata.model_version

-- name: update_with_subquery_set
UPDATE {T} SET model_version = (SELECT max(model_version) FROM {N} x WHERE x.model_name = model_metadata.model_name) WHERE id = 1 RETURNING id, model_version

-- name: update_v2_model_type
-- errors: v1
UPDATE {T} SET model_type = 'cnn' WHERE model_type = 'neural_network' RETURNING id, model_type

-- name: delete_using_self
DELETE FROM {T} USING {N} newer WHERE newer.model_name = model_metadata.model_name AND newer.id > model_metadata.id RETURNING model_metadata.id

-- name: delete_where_exists
DELETE FROM {T} WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.model_id = model_metadata.id) RETURNING id

-- name: delete_all_count
DELETE FROM {T}

-- name: exists_in_select_list
SELECT EXISTS (SELECT 1 FROM {T} WHERE model_name = 'gpt'), EXISTS (SELECT 1 FROM {T} WHERE model_name = 'nope')

-- name: in_subquery_not_in
SELECT id FROM {T} WHERE id NOT IN (SELECT model_id FROM deployments) ORDER BY id

-- name: any_param_text_array
-- params: text[]:resnet,gpt
SELECT id FROM {T} WHERE model_name = ANY($1::text[]) ORDER BY id

-- name: all_operator
SELECT id FROM {T} WHERE id > ALL (SELECT model_id FROM deployments WHERE env = 'prod' AND model_id < 3) ORDER BY id

-- name: between_symmetric
SELECT id FROM {T} WHERE id BETWEEN SYMMETRIC 4 AND 2 ORDER BY id

-- name: from_only
SELECT id FROM ONLY {T} WHERE id = 1

-- name: table_shorthand
TABLE {N}

-- name: values_join
SELECT v.label, m.model_name FROM (VALUES (1, 'first'), (2, 'second')) AS v(id, label) JOIN {N} m ON m.id = v.id ORDER BY v.id

-- name: full_outer_join
SELECT m.id, d.id FROM {N} m FULL OUTER JOIN deployments d ON d.model_id = m.id ORDER BY m.id NULLS LAST, d.id NULLS LAST

-- name: cross_join_count
SELECT count(*) FROM {N} a CROSS JOIN {N} b

-- name: natural_join_using
SELECT id, model_name FROM {T} JOIN tags ON tags.model_id = model_metadata.id WHERE tags.tag = 'nlp' ORDER BY id

-- name: string_agg_order
SELECT string_agg(model_name, ',' ORDER BY id) FROM {T}

-- name: array_agg_json_agg
SELECT model_name, array_agg(id ORDER BY id), json_agg(model_version ORDER BY id) FROM {T} GROUP BY model_name ORDER BY model_name

-- name: generate_series_join
SELECT g, m.model_name FROM generate_series(1, 3) AS g LEFT JOIN {N} m ON m.id = g ORDER BY g

-- name: text_search_like_ilike
SELECT id FROM {T} WHERE model_name ILIKE 'RES%' OR model_version ~ '^3' ORDER BY id

-- name: coalesce_nullif
SELECT id, coalesce(hyperparameters->>'heads', 'n/a'), nullif(model_version, '1.0') FROM {T} ORDER BY id

-- name: date_functions
SELECT date_trunc('month', created_at) AS month, count(*) FROM {T} GROUP BY 1 ORDER BY 1

-- name: extract_epoch
SELECT id, extract(epoch FROM created_at)::bigint FROM {T} ORDER BY id

-- name: string_containing_table_name
SELECT 'model_metadata' AS label, count(*) FROM {T}

-- name: identifier_containing_table_name
SELECT m.id AS model_metadata_id FROM {N} m WHERE m.id = 1

-- name: explain_costs_off
EXPLAIN (COSTS OFF) SELECT id FROM {T} WHERE id = 1

-- name: multi_statement_string
SELECT count(*) FROM {T}; SELECT max(id) FROM {T} WHERE model_name = 'resnet'

-- name: multi_statement_with_unmanaged
SELECT 1; UPDATE {T} SET model_version = 'x' WHERE id = 1; SELECT model_version FROM {T} WHERE id = 1

-- name: to_regclass_lookup
SELECT to_regclass({R}) IS NOT NULL, {R}::regclass::text

-- name: regclass_for_count_estimate
SELECT relkind FROM pg_class WHERE oid = {RP}::regclass
-- hand:
SELECT relkind FROM viewgate_catalog_{V}.pg_class AS pg_class WHERE oid = 'public.model_metadata_{V}'::regclass

-- name: information_schema_columns_by_name
SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'model_metadata' ORDER BY ordinal_position
-- hand:
SELECT column_name, data_type FROM viewgate_catalog_{V}.columns AS columns WHERE table_schema = 'public' AND table_name = 'model_metadata' ORDER BY ordinal_position

-- name: information_schema_tables_by_name
SELECT table_name, table_type FROM information_schema.tables WHERE table_name = 'model_metadata'
-- hand:
SELECT table_name, table_type FROM viewgate_catalog_{V}.tables AS tables WHERE table_name = 'model_metadata'

-- name: pg_class_by_name
SELECT relname, relkind FROM pg_class WHERE relname = 'model_metadata'
-- hand:
SELECT relname, relkind FROM viewgate_catalog_{V}.pg_class AS pg_class WHERE relname = 'model_metadata'

-- name: psql_describe_lookup
SELECT c.oid = {RP}::regclass, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(model_metadata)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3
-- hand:
SELECT c.oid = 'public.model_metadata_{V}'::regclass, n.nspname, c.relname FROM viewgate_catalog_{V}.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(model_metadata)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3

-- name: psql_describe_indexes
SELECT c2.relname, i.indisprimary, i.indisunique, pg_catalog.pg_get_constraintdef(con.oid, true), contype FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x')) WHERE c.oid = {RP}::regclass AND c.oid = i.indrelid AND i.indexrelid = c2.oid ORDER BY i.indisprimary DESC, c2.relname
-- hand:
SELECT c2.relname, i.indisprimary, i.indisunique, pg_catalog.pg_get_constraintdef(con.oid, true), contype FROM viewgate_catalog_{V}.pg_class c, viewgate_catalog_{V}.pg_class c2, viewgate_catalog_{V}.pg_index i LEFT JOIN viewgate_catalog_{V}.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x')) WHERE c.oid = 'public.model_metadata_{V}'::regclass AND c.oid = i.indrelid AND i.indexrelid = c2.oid ORDER BY i.indisprimary DESC, c2.relname

-- name: jdbc_get_primary_keys
SELECT result.TABLE_NAME, result.COLUMN_NAME, result.KEY_SEQ, result.PK_NAME FROM (SELECT ct.relname AS TABLE_NAME, a.attname AS COLUMN_NAME, (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, ci.relname AS PK_NAME, information_schema._pg_expandarray(i.indkey) AS KEYS, a.attnum AS A_ATTNUM FROM pg_catalog.pg_class ct JOIN pg_catalog.pg_attribute a ON (ct.oid = a.attrelid) JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid) JOIN pg_catalog.pg_index i ON (a.attrelid = i.indrelid) JOIN pg_catalog.pg_class ci ON (ci.oid = i.indexrelid) WHERE true AND n.nspname = E'public' AND ct.relname = E'model_metadata' AND i.indisprimary) result WHERE result.A_ATTNUM = (result.KEYS).x ORDER BY result.table_name, result.pk_name, result.key_seq
-- hand:
SELECT result.TABLE_NAME, result.COLUMN_NAME, result.KEY_SEQ, result.PK_NAME FROM (SELECT ct.relname AS TABLE_NAME, a.attname AS COLUMN_NAME, (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, ci.relname AS PK_NAME, information_schema._pg_expandarray(i.indkey) AS KEYS, a.attnum AS A_ATTNUM FROM viewgate_catalog_{V}.pg_class ct JOIN viewgate_catalog_{V}.pg_attribute a ON (ct.oid = a.attrelid) JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid) JOIN viewgate_catalog_{V}.pg_index i ON (a.attrelid = i.indrelid) JOIN viewgate_catalog_{V}.pg_class ci ON (ci.oid = i.indexrelid) WHERE true AND n.nspname = E'public' AND ct.relname = E'model_metadata' AND i.indisprimary) result WHERE result.A_ATTNUM = (result.KEYS).x ORDER BY result.table_name, result.pk_name, result.key_seq

-- name: information_schema_key_column_usage
SELECT tc.constraint_type, k.column_name, k.ordinal_position FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name WHERE tc.table_name = 'model_metadata' ORDER BY 1, 3
-- hand:
SELECT tc.constraint_type, k.column_name, k.ordinal_position FROM viewgate_catalog_{V}.table_constraints tc JOIN viewgate_catalog_{V}.key_column_usage k ON k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name WHERE tc.table_name = 'model_metadata' ORDER BY 1, 3

-- name: catalog_unrelated_relation_unchanged
SELECT count(*) > 0 FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod WHERE a.amname = 'btree'

-- name: catalog_namespaces_without_the_substitutes
SELECT count(*) > 0 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_type t ON t.typnamespace = n.oid WHERE n.nspname = 'pg_catalog'
-- hand:
SELECT count(*) > 0 FROM viewgate_catalog_{V}.pg_namespace AS n JOIN viewgate_catalog_{V}.pg_type t ON t.typnamespace = n.oid WHERE n.nspname = 'pg_catalog'

-- name: catalog_regclass_literal_stays_the_catalog
SELECT count(*) FROM pg_catalog.pg_description WHERE classoid = 'pg_catalog.pg_class'::regclass AND objoid = 0
-- hand:
SELECT count(*) FROM viewgate_catalog_{V}.pg_description AS pg_description WHERE classoid = 'pg_catalog.pg_class'::regclass AND objoid = 0

-- name: unmanaged_table_only
SELECT env, sum(replicas) FROM deployments GROUP BY env ORDER BY env

-- name: prefix_named_table_unmanaged
SELECT count(*) FROM model_metadata_archive

-- name: copy_out_table
-- mode: copy
COPY {N} (id, model_name) TO STDOUT
-- hand:
COPY (SELECT id, model_name FROM model_metadata_{V}) TO STDOUT

-- name: copy_out_query
-- mode: copy
COPY (SELECT id, model_version FROM {T} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)

-- name: prepare_execute
PREPARE by_name(text) AS SELECT id FROM {T} WHERE model_name = $1 ORDER BY id; EXECUTE by_name('resnet'); DEALLOCATE by_name

-- name: declare_cursor_fetch
DECLARE c CURSOR FOR SELECT id, model_name FROM {T} ORDER BY id; FETCH 2 FROM c; CLOSE c

-- name: nested_subqueries
SELECT id FROM {T} WHERE id IN (SELECT id FROM {N} a WHERE a.model_name IN (SELECT b.model_name FROM {N} b WHERE b.id IN (SELECT model_id FROM deployments))) ORDER BY id

-- name: derived_table_alias
SELECT sub.n FROM (SELECT model_name, count(*) AS n FROM {T} GROUP BY model_name) sub WHERE sub.model_name = 'resnet'

-- name: unicode_and_escapes
SELECT id, 'é–ü' AS ü, E'tab\there' AS esc, $tag$ model_metadata $tag$ AS dollar FROM {T} WHERE id = 1

-- name: quoted_mixed_case_alias
SELECT "M"."id" FROM {N} "M" WHERE "M"."model_name" = 'bert'

-- name: row_constructor_compare
SELECT id FROM {T} WHERE (model_name, model_version) = ('resnet', '2.0')

-- name: interval_arithmetic
SELECT id FROM {T} WHERE created_at > timestamptz '2024-03-01 00:00:00+00' - interval '1 day' ORDER BY id

-- name: select_into_temp
SELECT id, model_name INTO TEMP tmp_models FROM {T} WHERE id < 3; SELECT * FROM tmp_models ORDER BY id

-- name: create_table_as_reads_the_version
-- The new table gets the rows and columns the version sees, as SELECT ... INTO does.
CREATE TEMP TABLE snapshot AS SELECT * FROM {T} WHERE id > 3; SELECT * FROM snapshot ORDER BY id

-- name: prisma_qualified_wildcard
SELECT {PQ}.* FROM {PQ} WHERE {PQ}."id" = 3

-- name: schema_qualified_columns_unquoted
UPDATE {P} SET model_version = 'q' WHERE {P}.id = 2 RETURNING {P}.id, {P}.model_version

-- ===== Sequelize ==================================================================

-- name: sequelize_find_all
SELECT "id", "model_name", "model_version", "hyperparameters", "created_at" FROM {Q} AS "ModelMetadata" ORDER BY "ModelMetadata"."id" ASC

-- name: sequelize_find_by_pk
-- params: int8:3
SELECT "id", "model_name", "model_version" FROM {Q} AS "ModelMetadata" WHERE "ModelMetadata"."id" = $1

-- name: sequelize_find_one
SELECT "id", "model_name" FROM {Q} AS "ModelMetadata" WHERE "ModelMetadata"."model_name" = 'bert' LIMIT 1

-- name: sequelize_create
-- params: text:clip | text:1.0 | jsonb:{"dim": 512}
INSERT INTO {Q} ("id","model_name","model_version","hyperparameters","created_at") VALUES (DEFAULT,$1,$2,$3,'2024-06-01 00:00:00.000 +00:00') RETURNING "id","model_name","model_version","hyperparameters","created_at"

-- name: sequelize_bulk_create
INSERT INTO {Q} ("id","model_name","model_version","hyperparameters","created_at") VALUES (DEFAULT,'a','1','{}','2024-06-01 00:00:00.000 +00:00'),(DEFAULT,'b','2','{"x":1}','2024-06-02 00:00:00.000 +00:00') RETURNING "id","model_name"

-- name: sequelize_update
-- params: text:4.0 | int8:1
UPDATE {Q} SET "model_version"=$1 WHERE "id" = $2

-- name: sequelize_update_returning
UPDATE {Q} SET "model_version"='5.0' WHERE "id" IN (1, 2) RETURNING "id","model_version"

-- name: sequelize_increment_returning_all
UPDATE {Q} SET "model_version"="model_version" || '.1' WHERE "id" = 2 RETURNING *

-- name: sequelize_destroy
-- params: int8:6
DELETE FROM {Q} WHERE "id" = $1

-- name: sequelize_count
SELECT count(*) AS "count" FROM {Q} AS "ModelMetadata"

-- name: sequelize_count_where
SELECT count("ModelMetadata"."id") AS "count" FROM {Q} AS "ModelMetadata" WHERE "ModelMetadata"."model_name" LIKE 'res%'

-- name: sequelize_include_has_many
SELECT "ModelMetadata"."id", "ModelMetadata"."model_name", "deployments"."id" AS "deployments.id", "deployments"."env" AS "deployments.env" FROM {Q} AS "ModelMetadata" LEFT OUTER JOIN "deployments" AS "deployments" ON "ModelMetadata"."id" = "deployments"."model_id" ORDER BY "ModelMetadata"."id", "deployments"."id"

-- name: sequelize_find_and_count_all_subquery
SELECT "ModelMetadata".* FROM (SELECT "ModelMetadata"."id", "ModelMetadata"."model_name" FROM {Q} AS "ModelMetadata" ORDER BY "ModelMetadata"."id" LIMIT 3 OFFSET 1) AS "ModelMetadata" ORDER BY "ModelMetadata"."id"

-- name: sequelize_max
SELECT max("created_at") AS "max" FROM {Q} AS "ModelMetadata"

-- name: sequelize_group_count
SELECT "model_name", count("id") AS "n" FROM {Q} AS "ModelMetadata" GROUP BY "model_name" ORDER BY "model_name"

-- name: sequelize_json_path
SELECT "id" FROM {Q} AS "ModelMetadata" WHERE ("ModelMetadata"."hyperparameters"#>>'{lr}') = '0.1' ORDER BY "id"

-- name: sequelize_v2_attribute
-- errors: v1
SELECT "id", "model_type" FROM {Q} AS "ModelMetadata" WHERE "ModelMetadata"."model_type" = 'transformer' ORDER BY "id"

-- ===== Hibernate ==================================================================

-- name: hibernate_find
-- params: int8:1
select m1_0.id,m1_0.created_at,m1_0.hyperparameters,m1_0.model_name,m1_0.model_version from {N} m1_0 where m1_0.id=$1

-- name: hibernate_query_order_fetch_first
-- params: text:%e% | int8:3
select m1_0.id,m1_0.model_name from {N} m1_0 where m1_0.model_name like $1 escape '' order by m1_0.created_at desc fetch first $2 rows only

-- name: hibernate_insert_returning_id
-- params: jsonb:{"lr": 0.2} | text:vit | text:1.0
insert into {N} (created_at,hyperparameters,model_name,model_version) values ('2024-06-01 00:00:00+00',$1,$2,$3) returning id

-- name: hibernate_update_all_columns
-- params: text:bert | text:9 | int8:2
update {N} set created_at='2024-06-01 00:00:00+00',hyperparameters='{}',model_name=$1,model_version=$2 where id=$3

-- name: hibernate_delete
-- params: int8:5
delete from {N} where id=$1

-- name: hibernate_count
select count(m1_0.id) from {N} m1_0

-- name: hibernate_left_join_fetch
-- params: text:bert
select m1_0.id,d1_0.model_id,d1_0.id,d1_0.env from {N} m1_0 left join deployments d1_0 on m1_0.id=d1_0.model_id where m1_0.model_name=$1 order by d1_0.id

-- name: hibernate_exists_subquery
select m1_0.id from {N} m1_0 where exists(select 1 from deployments d1_0 where d1_0.model_id=m1_0.id and d1_0.env='prod') order by m1_0.id

-- name: hibernate_pessimistic_write
-- params: int8:3
select m1_0.id,m1_0.model_version from {N} m1_0 where m1_0.id=$1 for no key update

-- name: hibernate_optimistic_version_check
-- params: text:2.1 | int8:2 | text:2.0
update {N} set model_version=$1 where id=$2 and model_version=$3

-- name: hibernate_in_list_padding
-- params: int8:1 | int8:2 | int8:3
select m1_0.id from {N} m1_0 where m1_0.id in ($1,$2,$3,$3) order by m1_0.id

-- name: hibernate_offset_fetch
-- params: int8:2 | int8:2
select m1_0.id,m1_0.model_name from {N} m1_0 order by m1_0.id offset $1 rows fetch first $2 rows only

-- name: hibernate_group_having
-- params: int8:1
select m1_0.model_name,count(*) from {N} m1_0 group by m1_0.model_name having count(*)>$1 order by 1

-- name: hibernate_jsonb_exists_function
select m1_0.id from {N} m1_0 where jsonb_exists(m1_0.hyperparameters,'lr') order by m1_0.id

-- name: hibernate_v2_columns
-- errors: v1
select m1_0.id,m1_0.model_type,m1_0.schema_version from {N} m1_0 order by m1_0.id

-- ===== Hand-written: CTEs, windows, LATERAL, set operations, JSON ===================

-- name: recursive_cte_join
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT n.i, m.model_name FROM n JOIN {N} m ON m.id = n.i ORDER BY n.i

-- name: window_rank_partition
SELECT id, model_name, rank() OVER (PARTITION BY model_name ORDER BY created_at DESC) AS r FROM {T} ORDER BY id

-- name: window_lag_gap
SELECT id, created_at - lag(created_at) OVER (ORDER BY created_at) AS gap FROM {T} ORDER BY created_at

-- name: window_named_frame
SELECT id, sum(id) OVER w AS running FROM {T} WINDOW w AS (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) ORDER BY id

-- name: lateral_top_deployment
SELECT m.id, d.env FROM {N} m CROSS JOIN LATERAL (SELECT env FROM deployments WHERE model_id = m.id ORDER BY replicas DESC, id LIMIT 1) d ORDER BY m.id

-- name: lateral_jsonb_keys
SELECT m.id, k FROM {N} m, LATERAL jsonb_object_keys(m.hyperparameters) AS k ORDER BY m.id, k

-- name: union_with_archive
SELECT id FROM {T} WHERE model_name = 'bert' UNION SELECT id FROM model_metadata_archive ORDER BY 1

-- name: intersect_deployed
SELECT model_id FROM deployments INTERSECT SELECT id FROM {T} ORDER BY 1

-- name: except_undeployed
SELECT id FROM {T} EXCEPT SELECT model_id FROM deployments ORDER BY 1

-- name: jsonb_agg_objects
SELECT jsonb_agg(jsonb_build_object('id', id, 'name', model_name) ORDER BY id) FROM {T}

-- name: jsonpath_exists
SELECT id FROM {T} WHERE hyperparameters @? '$.lr ? (@ < 0.01)' ORDER BY id

-- name: jsonb_contains_array
SELECT id FROM {T} WHERE hyperparameters @> '{"tags": ["nlp"]}' ORDER BY id

-- name: aggregate_filter_clause
SELECT count(*) FILTER (WHERE model_name = 'resnet') AS resnets, count(*) AS total FROM {T}

-- name: grouping_sets_total
SELECT model_name, count(*) FROM {T} GROUP BY GROUPING SETS ((model_name), ()) ORDER BY model_name NULLS LAST

-- name: distinct_on_latest
SELECT DISTINCT ON (model_name) model_name, model_version FROM {T} ORDER BY model_name, created_at DESC

-- name: update_from_join_returning
UPDATE {N} SET model_version = model_version || '-prod' FROM deployments d WHERE d.model_id = {N}.id AND d.env = 'prod' RETURNING {N}.id

-- name: delete_using_returning
DELETE FROM {N} USING tags t WHERE t.model_id = {N}.id AND t.tag = 'vision' RETURNING {N}.id

-- name: cte_update_count
WITH moved AS (UPDATE {T} SET model_version = '0' WHERE id = 4 RETURNING id) SELECT count(*) FROM moved

-- name: scalar_subquery_per_row
SELECT d.id, (SELECT model_name FROM {T} WHERE id = d.model_id) AS name FROM deployments d ORDER BY d.id

-- name: not_exists_anti_join
SELECT d.id FROM deployments d WHERE NOT EXISTS (SELECT 1 FROM {T} WHERE id = d.model_id) ORDER BY d.id

-- name: array_agg_tags
SELECT m.model_name, array_agg(t.tag ORDER BY t.tag) FROM {N} m JOIN tags t ON t.model_id = m.id GROUP BY m.model_name ORDER BY 1

-- name: generate_series_left_join
SELECT g, m.model_name FROM generate_series(1, 3) g LEFT JOIN {N} m ON m.id = g ORDER BY g

-- name: values_list_left_join
SELECT v.name, m.id FROM (VALUES ('bert'), ('gpt'), ('nope')) v(name) LEFT JOIN {N} m ON m.model_name = v.name ORDER BY v.name, m.id

-- name: case_buckets
SELECT id, CASE WHEN created_at < '2024-03-01' THEN 'old' ELSE 'new' END AS age FROM {T} ORDER BY id

-- name: v2_coalesced_type_groups
-- errors: v1
SELECT model_type, count(*) FROM {T} GROUP BY model_type ORDER BY model_type

-- ===== More Django ================================================================

-- name: django_values_list_flat
SELECT {Q}."model_name" FROM {Q} ORDER BY {Q}."model_name" ASC

-- name: django_aggregate_avg
SELECT AVG({Q}."id") AS "id__avg" FROM {Q}

-- name: django_annotate_count_join
SELECT {Q}."id", COUNT("deployments"."id") AS "n" FROM {Q} LEFT OUTER JOIN "deployments" ON ({Q}."id" = "deployments"."model_id") GROUP BY {Q}."id" ORDER BY {Q}."id"

-- name: django_annotate_count_reads_the_row
-- The view has no primary key, so the row's other columns are grouped too (`{Q}` is not
-- used: the hand version lists them).
SELECT "model_metadata"."id", "model_metadata"."model_name", COUNT("deployments"."id") AS "n" FROM "model_metadata" LEFT OUTER JOIN "deployments" ON ("model_metadata"."id" = "deployments"."model_id") GROUP BY "model_metadata"."id" ORDER BY "model_metadata"."id"
-- hand:
SELECT "model_metadata"."id", "model_metadata"."model_name", COUNT("deployments"."id") AS "n" FROM "model_metadata_{V}" AS "model_metadata" LEFT OUTER JOIN "deployments" ON ("model_metadata"."id" = "deployments"."model_id") GROUP BY "model_metadata"."id", "model_metadata"."model_name" ORDER BY "model_metadata"."id"

-- name: django_annotate_grouped_by_position
SELECT "model_metadata"."id" AS "id", "model_metadata"."model_version" AS "model_version", COUNT("deployments"."id") AS "s" FROM "model_metadata" LEFT OUTER JOIN "deployments" ON ("model_metadata"."id" = "deployments"."model_id") GROUP BY 1 ORDER BY 1 ASC
-- hand:
SELECT "model_metadata"."id" AS "id", "model_metadata"."model_version" AS "model_version", COUNT("deployments"."id") AS "s" FROM "model_metadata_{V}" AS "model_metadata" LEFT OUTER JOIN "deployments" ON ("model_metadata"."id" = "deployments"."model_id") GROUP BY 1, "model_metadata"."model_version" ORDER BY 1 ASC

-- name: grouped_by_key_reads_in_having_and_order_by_not_in_aggregates
SELECT upper(m.model_name) AS name, count(d.id) AS n, max(m.created_at) AS latest FROM model_metadata m JOIN deployments d ON d.model_id = m.id GROUP BY m.id HAVING m.model_version <> '' ORDER BY m.model_version DESC, m.id
-- hand:
SELECT upper(m.model_name) AS name, count(d.id) AS n, max(m.created_at) AS latest FROM model_metadata_{V} m JOIN deployments d ON d.model_id = m.id GROUP BY m.id, m.model_name, m.model_version HAVING m.model_version <> '' ORDER BY m.model_version DESC, m.id

-- name: grouped_by_something_else_is_left_to_postgres
-- errors: v1 v2
SELECT {N}.model_name, count(*) FROM {N} GROUP BY {N}.model_version

-- name: django_q_or
SELECT {Q}."id" FROM {Q} WHERE ({Q}."model_name" = 'bert' OR {Q}."model_version" = '1.0') ORDER BY {Q}."id"

-- name: django_icontains
SELECT {Q}."id" FROM {Q} WHERE UPPER({Q}."model_name"::text) LIKE UPPER('%ES%') ORDER BY {Q}."id"

-- name: django_in_subquery
SELECT {Q}."id" FROM {Q} WHERE {Q}."id" IN (SELECT U0."model_id" FROM "deployments" U0 WHERE U0."env" = 'prod') ORDER BY {Q}."id"

-- name: django_exclude_isnull
SELECT {Q}."id" FROM {Q} WHERE NOT ({Q}."model_version" IS NULL) ORDER BY {Q}."id"

-- name: django_trunc_month
SELECT DATE_TRUNC('month', {Q}."created_at" AT TIME ZONE 'UTC') AS "m", COUNT(*) AS "n" FROM {Q} GROUP BY 1 ORDER BY 1

-- name: django_jsonfield_has_key
SELECT {Q}."id" FROM {Q} WHERE {Q}."hyperparameters" ? 'layers' ORDER BY {Q}."id"

-- name: django_jsonfield_key_transform
SELECT {Q}."id", ({Q}."hyperparameters" -> 'lr') AS "lr" FROM {Q} ORDER BY {Q}."id"

-- name: django_select_for_update_nowait
SELECT {Q}."id" FROM {Q} WHERE {Q}."id" = 1 FOR UPDATE NOWAIT

-- name: django_delete_in
DELETE FROM {Q} WHERE {Q}."id" IN (4, 5)

-- name: django_update_f_expression
UPDATE {Q} SET "model_version" = ({Q}."model_version" || '-x') WHERE {Q}."id" = 3

-- ===== More SQLAlchemy ============================================================

-- name: sqla_in_expanding
-- params: int8:1 | int8:2
SELECT model_metadata.id, model_metadata.model_name FROM {T} WHERE model_metadata.id IN ($1, $2) ORDER BY model_metadata.id

-- name: sqla_exists
SELECT EXISTS (SELECT * FROM {T} WHERE model_metadata.model_name = 'gpt') AS anon_1

-- name: sqla_count_distinct
SELECT count(DISTINCT model_metadata.model_name) AS count_1 FROM {T}

-- name: sqla_aliased_outerjoin
SELECT model_metadata_1.id, deployments_1.env FROM {N} AS model_metadata_1 LEFT OUTER JOIN deployments AS deployments_1 ON model_metadata_1.id = deployments_1.model_id ORDER BY model_metadata_1.id, deployments_1.env

-- name: sqla_anon_subquery
SELECT anon_1.model_name, anon_1.n FROM (SELECT model_metadata.model_name AS model_name, count(*) AS n FROM {T} GROUP BY model_metadata.model_name) AS anon_1 WHERE anon_1.n > 1

-- name: sqla_cte
WITH top AS (SELECT model_metadata.id AS id FROM {T} ORDER BY model_metadata.created_at DESC LIMIT 2) SELECT top.id FROM top ORDER BY top.id

-- name: sqla_insert_returning_params
-- params: text:t5 | text:1 | jsonb:{}
INSERT INTO {T} (model_name, model_version, hyperparameters, created_at) VALUES ($1, $2, $3, '2024-06-01T00:00:00+00:00') RETURNING model_metadata.id

-- name: sqla_insertmanyvalues
INSERT INTO {T} (model_name, model_version, created_at) VALUES ('a', '1', '2024-06-01'), ('b', '2', '2024-06-02') RETURNING model_metadata.id, model_metadata.model_name

-- name: sqla_update_params
-- params: text:7 | text:resnet
UPDATE {T} SET model_version=$1 WHERE model_metadata.model_name = $2

-- name: sqla_delete_returning
-- params: int8:6
DELETE FROM {T} WHERE model_metadata.id = $1 RETURNING model_metadata.id, model_metadata.model_name

-- name: sqla_between
SELECT model_metadata.id FROM {T} WHERE model_metadata.created_at BETWEEN '2024-02-01' AND '2024-04-01' ORDER BY model_metadata.id

-- name: sqla_coalesce_label
SELECT coalesce(model_metadata.model_version, 'none') AS v FROM {T} ORDER BY model_metadata.id

-- name: sqla_json_getitem_astext
SELECT model_metadata.id FROM {T} WHERE (model_metadata.hyperparameters ->> 'layers') IS NOT NULL ORDER BY model_metadata.id

-- name: sqla_limit_offset_params
-- params: int8:2 | int8:1
SELECT model_metadata.id FROM {T} ORDER BY model_metadata.id LIMIT $1 OFFSET $2

-- ===== More ActiveRecord ==========================================================

-- name: ar_find_by
-- params: text:bert | int8:1
SELECT {Q}.* FROM {Q} WHERE {Q}."model_name" = $1 LIMIT $2

-- name: ar_pluck_like
SELECT {Q}."id" FROM {Q} WHERE {Q}."model_version" LIKE '1%' ORDER BY {Q}."id"

-- name: ar_where_not
SELECT {Q}."id" FROM {Q} WHERE {Q}."model_name" != 'resnet' ORDER BY {Q}."id" ASC

-- name: ar_last
SELECT {Q}.* FROM {Q} ORDER BY {Q}."id" DESC LIMIT 1

-- name: ar_inner_joins
SELECT {Q}."id" FROM {Q} INNER JOIN "deployments" ON "deployments"."model_id" = {Q}."id" WHERE "deployments"."env" = 'prod' ORDER BY {Q}."id"

-- name: ar_group_count_alias_with_table_name
SELECT COUNT(*) AS "count_all", {Q}."model_name" AS "model_metadata_model_name" FROM {Q} GROUP BY {Q}."model_name" ORDER BY 2

-- name: ar_exists_limit
-- params: int8:2 | int8:1
SELECT 1 AS one FROM {Q} WHERE {Q}."id" = $1 LIMIT $2

-- name: ar_update_all
UPDATE {Q} SET "model_version" = '0.0' WHERE {Q}."model_name" = 'xgb'

-- name: ar_delete_all_subquery
DELETE FROM {Q} WHERE {Q}."id" IN (SELECT {Q}."id" FROM {Q} WHERE {Q}."model_name" = 'lstm')

-- name: ar_find_in_batches
-- params: int8:2 | int8:2
SELECT {Q}.* FROM {Q} WHERE {Q}."id" > $1 ORDER BY {Q}."id" ASC LIMIT $2

-- name: ar_touch
-- params: int8:3
UPDATE {Q} SET "created_at" = '2024-07-01 00:00:00' WHERE {Q}."id" = $1

-- name: activerecord_group_by_key_with_star
SELECT model_metadata.*, COUNT(deployments.id) AS deployments_count FROM model_metadata LEFT OUTER JOIN deployments ON deployments.model_id = model_metadata.id GROUP BY model_metadata.id HAVING COUNT(deployments.id) >= 0 ORDER BY model_metadata.id
-- hand v1:
SELECT model_metadata.*, COUNT(deployments.id) AS deployments_count FROM model_metadata_v1 AS model_metadata LEFT OUTER JOIN deployments ON deployments.model_id = model_metadata.id GROUP BY model_metadata.id, model_metadata.model_name, model_metadata.model_version, model_metadata.hyperparameters, model_metadata.created_at HAVING COUNT(deployments.id) >= 0 ORDER BY model_metadata.id
-- hand v2:
SELECT model_metadata.*, COUNT(deployments.id) AS deployments_count FROM model_metadata_v2 AS model_metadata LEFT OUTER JOIN deployments ON deployments.model_id = model_metadata.id GROUP BY model_metadata.id, model_metadata.model_name, model_metadata.model_version, model_metadata.model_type, model_metadata.hyperparameters, model_metadata.created_at, model_metadata.schema_version HAVING COUNT(deployments.id) >= 0 ORDER BY model_metadata.id

-- ===== More Prisma ================================================================

-- name: prisma_find_first_or
-- params: text:bert | text:gpt | int8:1 | int8:0
SELECT {PQ}."id" FROM {PQ} WHERE ({PQ}."model_name" = $1 OR {PQ}."model_name" = $2) ORDER BY {PQ}."id" ASC LIMIT $3 OFFSET $4

-- name: prisma_not_in
-- params: int8:1 | int8:2
SELECT {PQ}."id" FROM {PQ} WHERE {PQ}."id" NOT IN ($1,$2) ORDER BY {PQ}."id" ASC

-- name: prisma_delete_many
-- params: text:xgb | text:lstm
DELETE FROM {PQ} WHERE {PQ}."model_name" IN ($1,$2)

-- name: prisma_aggregate_min_max
-- params: int8:0
SELECT MIN("sub"."created_at"), MAX("sub"."created_at") FROM (SELECT {PQ}."created_at" FROM {PQ} WHERE 1=1 OFFSET $1) AS "sub"

-- name: prisma_group_by_having
-- params: int8:1 | int8:0
SELECT {PQ}."model_name", COUNT({PQ}."id") FROM {PQ} WHERE 1=1 GROUP BY {PQ}."model_name" HAVING COUNT({PQ}."id") > $1 ORDER BY {PQ}."model_name" ASC OFFSET $2

-- name: prisma_json_equals
-- params: jsonb:{}
SELECT {PQ}."id" FROM {PQ} WHERE {PQ}."hyperparameters" = $1 ORDER BY {PQ}."id"

-- name: prisma_relation_count
SELECT {PQ}."id", (SELECT COUNT(*) FROM "public"."deployments" WHERE "public"."deployments"."model_id" = {PQ}."id") AS "_count" FROM {PQ} ORDER BY {PQ}."id"

-- name: prisma_cursor_pagination
-- params: int8:3 | int8:2 | int8:0
SELECT {PQ}."id" FROM {PQ} WHERE {PQ}."id" >= (SELECT {PQ}."id" FROM {PQ} WHERE ({PQ}."id") = ($1)) ORDER BY {PQ}."id" ASC LIMIT $2 OFFSET $3

-- ===== More hand-written SQL ======================================================

-- name: count_distinct_expression
SELECT count(DISTINCT lower(model_name)) FROM {T}

-- name: string_agg_ordered
SELECT string_agg(model_name, ',' ORDER BY id) FROM {T}

-- name: percentile_within_group
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY id) FROM {T}

-- name: ntile_window
SELECT id, ntile(2) OVER (ORDER BY id) FROM {T} ORDER BY id

-- name: first_value_window
SELECT DISTINCT model_name, first_value(model_version) OVER (PARTITION BY model_name ORDER BY created_at) FROM {T} ORDER BY 1

-- name: two_ctes_join_using
WITH a AS (SELECT id FROM {T} WHERE id < 4), b AS (SELECT id FROM {T} WHERE id > 2) SELECT a.id FROM a JOIN b USING (id) ORDER BY 1

-- name: materialized_cte
WITH m AS MATERIALIZED (SELECT id, model_name FROM {T}) SELECT count(*) FROM m WHERE model_name LIKE 'r%'

-- name: join_using_subquery
SELECT id, model_name FROM {T} JOIN (SELECT model_id AS id FROM deployments WHERE env = 'prod') p USING (id) ORDER BY id

-- name: full_outer_join
SELECT m.id, d.id FROM {N} m FULL OUTER JOIN deployments d ON d.model_id = m.id ORDER BY m.id NULLS LAST, d.id NULLS LAST

-- name: self_join
SELECT a.id, b.id FROM {N} a JOIN {N} b ON a.model_name = b.model_name AND a.id < b.id ORDER BY 1, 2

-- name: any_array_literal
SELECT id FROM {T} WHERE id = ANY (ARRAY[1, 3, 5]) ORDER BY id

-- name: any_int_array_param
-- params: int8[]:1,2,6
SELECT id FROM {T} WHERE id = ANY ($1) ORDER BY id

-- name: any_text_array_param
-- params: text[]:bert,gpt
SELECT id FROM {T} WHERE model_name = ANY ($1) ORDER BY id

-- name: ilike_prefix
SELECT id FROM {T} WHERE model_name ILIKE 'RES%' ORDER BY id

-- name: regex_match
SELECT id FROM {T} WHERE model_name ~ '^(bert|gpt)$' ORDER BY id

-- name: jsonb_set_update
UPDATE {T} SET hyperparameters = jsonb_set(hyperparameters, '{lr}', '0.5') WHERE id = 1 RETURNING hyperparameters

-- name: jsonb_each_text_lateral
SELECT m.id, e.key, e.value FROM {N} m, jsonb_each_text(m.hyperparameters) e WHERE m.id = 4 ORDER BY e.key

-- name: to_jsonb_whole_row
SELECT to_jsonb(m) - 'created_at' FROM {N} m WHERE m.id = 2

-- name: row_to_json_subquery
SELECT row_to_json(t) FROM (SELECT id, model_name FROM {T} WHERE id = 3) t

-- name: insert_select_from_same_table
INSERT INTO {T} (model_name, model_version, created_at) SELECT model_name || '-copy', model_version, created_at FROM {N} src WHERE src.id = 2 RETURNING id, model_name

-- name: insert_with_defaults
INSERT INTO {T} (model_name, model_version) VALUES ('d', '1') RETURNING id, hyperparameters

-- name: insert_returning_star
INSERT INTO {T} (model_name, model_version, created_at) VALUES ('m1', '1', '2024-06-01'), ('m2', '2', '2024-06-02') RETURNING *

-- name: lock_table_passes_through
LOCK TABLE model_metadata IN ACCESS SHARE MODE

-- name: order_by_nulls_last
SELECT id FROM {T} ORDER BY model_version DESC NULLS LAST, id

-- name: group_by_rollup
SELECT model_name, count(*) FROM {T} GROUP BY ROLLUP (model_name) ORDER BY model_name NULLS LAST

-- ===== Row types: the table's name used as a type =================================
-- The base table's row type has every column of every version; the view's has the version's.

-- name: rowtype_null_cast_expanded
SELECT (NULL::{N}).*

-- name: rowtype_pg_typeof_array
SELECT pg_typeof(NULL::{Q}[]), array_length(ARRAY[NULL::{N}, NULL::{N}], 1)

-- name: rowtype_json_populate_record
SELECT * FROM json_populate_record(NULL::{P}, '{"id": 7, "model_name": "x", "model_version": "1", "model_type": "cnn", "hyperparameters": {}}')

-- name: rowtype_jsonb_populate_record_field
SELECT (jsonb_populate_record(NULL::{N}, '{"model_name": "y"}')).model_name

-- name: postgrest_insert_json_populate_recordset
INSERT INTO {PQ}("model_name", "model_version") SELECT "pgrst_body"."model_name", "pgrst_body"."model_version" FROM (SELECT '[{"model_name": "pgrst", "model_version": "9"}]'::json AS json_data) pgrst_payload, LATERAL (SELECT "model_name", "model_version" FROM json_populate_recordset(null::{PQ}, pgrst_payload.json_data) _) pgrst_body RETURNING "model_name", "model_version"

-- name: rowtype_typed_string_literal
-- errors: v2
SELECT ({N} '(1,a,1,{},2024-01-01 00:00:00+00)').model_name

-- name: rowtype_cast_of_row
-- errors: v2
SELECT (CAST(ROW(1, 'a', '1', '{}'::jsonb, '2024-01-01'::timestamptz) AS {N})).model_version

-- ===== MERGE: one MERGE on the base table (PostgreSQL 15 cannot MERGE into a view) =====
-- At v1 and v2 the hand-written equivalent is the MERGE written by hand on the base table
-- (docs/rewriting.md, "MERGE through a version"); the SELECT after it reads the result back
-- through the version in the same transaction.

-- name: hand_merge_using_values_update_and_insert
MERGE INTO {N} AS t USING (VALUES (1, 'resnet-x'), (90, 'new')) AS s (id, name) ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = s.name WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, '1'); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id
-- hand v1:
MERGE INTO public.model_metadata AS t USING (VALUES (1, 'resnet-x'), (90, 'new')) AS s (id, name) ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = s.name WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, '1'); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id
-- hand v2:
MERGE INTO public.model_metadata AS t USING (VALUES (1, 'resnet-x'), (90, 'new')) AS s (id, name) ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = s.name WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, '1'); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id

-- name: hand_merge_delete_from_a_subquery_source_with_a_condition
MERGE INTO {N} m USING (SELECT model_id FROM deployments WHERE env = 'staging') d ON m.id = d.model_id WHEN MATCHED AND m.model_version >= '2' THEN DELETE; SELECT id FROM {T} ORDER BY id
-- hand v1:
MERGE INTO public.model_metadata m USING (SELECT model_id FROM deployments WHERE env = 'staging') d ON m.id = d.model_id WHEN MATCHED AND m.model_version >= '2' THEN DELETE; SELECT id FROM {T} ORDER BY id
-- hand v2:
MERGE INTO public.model_metadata m USING (SELECT model_id FROM deployments WHERE env = 'staging') d ON m.id = d.model_id WHEN MATCHED AND m.model_version >= '2' THEN DELETE; SELECT id FROM {T} ORDER BY id

-- name: hand_merge_do_nothing_and_insert_without_a_column_list
MERGE INTO {N} t USING (VALUES (3), (91)) s (k) ON t.id = s.k WHEN MATCHED THEN DO NOTHING WHEN NOT MATCHED THEN INSERT VALUES (s.k, 'm' || s.k, '9'); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id
-- hand v1:
MERGE INTO public.model_metadata t USING (VALUES (3), (91)) s (k) ON t.id = s.k WHEN MATCHED THEN DO NOTHING WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.k, 'm' || s.k, '9'); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id
-- hand v2:
MERGE INTO public.model_metadata t USING (VALUES (3), (91)) s (k) ON t.id = s.k WHEN MATCHED THEN DO NOTHING WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.k, 'm' || s.k, '9'); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id

-- name: hand_merge_insert_default_and_omitted_columns
MERGE INTO {N} t USING (VALUES (92)) s (k) ON t.id = s.k WHEN NOT MATCHED THEN INSERT (model_version, model_name, hyperparameters) VALUES ('1', 'd' || s.k, DEFAULT); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id
-- hand v1:
MERGE INTO public.model_metadata t USING (VALUES (92)) s (k) ON t.id = s.k WHEN NOT MATCHED THEN INSERT (model_version, model_name) VALUES ('1', 'd' || s.k); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id
-- hand v2:
MERGE INTO public.model_metadata t USING (VALUES (92)) s (k) ON t.id = s.k WHEN NOT MATCHED THEN INSERT (model_version, model_name) VALUES ('1', 'd' || s.k); SELECT id, model_name, model_version, hyperparameters FROM {T} ORDER BY id

-- name: hand_merge_from_the_managed_table_itself
MERGE INTO {N} t USING (SELECT id, model_name FROM {T} WHERE id <= 2) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = upper(s.model_name); SELECT id, model_name FROM {T} ORDER BY id
-- hand v1:
MERGE INTO public.model_metadata t USING (SELECT id, model_name FROM {T} WHERE id <= 2) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = upper(s.model_name); SELECT id, model_name FROM {T} ORDER BY id
-- hand v2:
MERGE INTO public.model_metadata t USING (SELECT id, model_name FROM {T} WHERE id <= 2) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = upper(s.model_name); SELECT id, model_name FROM {T} ORDER BY id

-- name: hand_merge_with_parameters
-- params: int8:1 | text:renamed
MERGE INTO {N} AS t USING (SELECT $1::int8 AS id, $2::text AS name) AS s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = s.name, model_version = t.model_version || '.1' WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, '0')
-- hand v1:
MERGE INTO public.model_metadata AS t USING (SELECT $1::int8 AS id, $2::text AS name) AS s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = s.name, model_version = t.model_version || '.1' WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, '0')
-- hand v2:
MERGE INTO public.model_metadata AS t USING (SELECT $1::int8 AS id, $2::text AS name) AS s ON t.id = s.id WHEN MATCHED THEN UPDATE SET model_name = s.name, model_version = t.model_version || '.1' WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, s.name, '0')

-- name: hand_merge_with_a_condition_from_another_table
MERGE INTO {N} t USING (SELECT id FROM deployments WHERE env = 'prod') s ON t.id = s.id WHEN MATCHED AND t.model_name <> 'x' THEN UPDATE SET model_version = t.model_version || '-prod'; SELECT id, model_version FROM {T} ORDER BY id
-- hand v1:
MERGE INTO public.model_metadata t USING (SELECT id FROM deployments WHERE env = 'prod') s ON t.id = s.id WHEN MATCHED AND t.model_name <> 'x' THEN UPDATE SET model_version = t.model_version || '-prod'; SELECT id, model_version FROM {T} ORDER BY id
-- hand v2:
MERGE INTO public.model_metadata t USING (SELECT id FROM deployments WHERE env = 'prod') s ON t.id = s.id WHEN MATCHED AND t.model_name <> 'x' THEN UPDATE SET model_version = t.model_version || '-prod'; SELECT id, model_version FROM {T} ORDER BY id
