//! Migrations on partitioned tables, whose indexes Postgres neither builds nor drops
//! `CONCURRENTLY`.

use crate::migration_support;

use migration_support::{complete_now, seeded, start_text};

/// `DROP INDEX CONCURRENTLY` of a partitioned index fails (0A000), and it ran after the
/// contract had committed: the migration was complete and the index still there, with advice
/// to run the same statement again.
#[tokio::test]
async fn a_partitioned_index_is_dropped_by_the_contract() {
    let database = seeded(2).await;
    database.admin(
        "CREATE TABLE public.events (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE public.events_old PARTITION OF events FOR VALUES FROM ('2000-01-01') TO ('2026-01-01');
         CREATE TABLE public.events_new PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2100-01-01');
         CREATE INDEX events_at ON events (at)",
    );
    let indexes_on_at = || {
        database.admin(
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indnatts = 1 AND a.attname = 'at'",
        )
    };
    assert_eq!(indexes_on_at(), "3", "the parent's and each partition's");
    start_text(
        &database,
        "0002.toml",
        "version = \"v2\"\nfrom = \"v1\"\n[[operations]]\nop = \"drop_index\"\nname = \"events_at\"",
    )
    .await
    .expect("starts");
    database.admin("UPDATE viewgate.settings SET default_version = 'v2'");
    complete_now(&database).await.expect("completes");
    assert_eq!(indexes_on_at(), "0");
}
