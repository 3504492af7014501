-- The model_metadata table as the first application build (v1) created it, before model_type
-- and schema_version existed. The migration 0002_model_type.toml evolves it under live
-- traffic; see docs/migrations.md.
CREATE TABLE IF NOT EXISTS public.model_metadata (
    id              bigserial PRIMARY KEY,
    model_name      text NOT NULL,
    model_version   text NOT NULL,
    hyperparameters jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
