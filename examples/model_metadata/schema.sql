-- Base table of the model_metadata example: the physical table both versions share.
-- Columns only v2 knows about (model_type, schema_version) are nullable or have a
-- default, so v1 clients can keep inserting rows without knowing them.
CREATE TABLE IF NOT EXISTS public.model_metadata (
    id              bigserial PRIMARY KEY,
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    model_type      text,
    hyperparameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    schema_version  integer NOT NULL DEFAULT 1
);
