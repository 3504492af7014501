//! Every schema change the spec supports, each applied to a real Postgres with a v1 and a v2
//! client reading and writing through their own views and seeing each other's writes.

use crate::support;

use support::{Database, exec, lines};
use viewgate::catalog_read::load_routing_map;

async fn with_spec(schema: &str, spec: &str) -> Database {
    let database = Database::start();
    database.admin(schema);
    let outcome = database.apply_text(spec).await;
    assert!(!outcome.is_noop(), "{outcome}");
    database
}

#[tokio::test]
async fn add_column_nullable_and_with_default() {
    let database = with_spec(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, note text, priority int NOT NULL DEFAULT 3)",
        r#"
[[tables]]
name = "items"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "name"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "items"
columns = ["id", "name", "note", "priority"]
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(&v1, "INSERT INTO items_v1 (name) VALUES ('from v1')").await;
    exec(
        &v2,
        "INSERT INTO items_v2 (name, note, priority) VALUES ('from v2', 'hello', 7)",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT name, note, priority FROM items_v2 ORDER BY id").await,
        ["from v1|<null>|3", "from v2|hello|7"],
        "v1's insert gets NULL and the base default for columns it does not know"
    );
    assert_eq!(
        lines(&v1, "SELECT * FROM items_v1 ORDER BY id").await,
        ["1|from v1", "2|from v2"]
    );
    exec(
        &v1,
        "UPDATE items_v1 SET name = 'renamed by v1' WHERE id = 2",
    )
    .await;
    assert_eq!(
        lines(
            &v2,
            "SELECT name, note, priority FROM items_v2 WHERE id = 2"
        )
        .await,
        ["renamed by v1|hello|7"],
        "a v1 update keeps the columns only v2 sees"
    );
}

#[tokio::test]
async fn hide_a_column_in_the_newer_version() {
    let database = with_spec(
        "CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL, legacy_code text NOT NULL)",
        r#"
[[tables]]
name = "accounts"

[[versions]]
name = "v1"
[[versions.tables]]
base = "accounts"
columns = ["id", "email", "legacy_code"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "accounts"
columns = ["id", "email"]
hidden_defaults = { legacy_code = "'none'" }
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(
        &v1,
        "INSERT INTO accounts_v1 (email, legacy_code) VALUES ('a@x', 'L-17')",
    )
    .await;
    let returned = lines(
        &v2,
        "INSERT INTO accounts_v2 (email) VALUES ('b@x') RETURNING *",
    )
    .await;
    assert_eq!(returned, ["2|b@x"]);
    assert_eq!(
        lines(
            &v1,
            "SELECT email, legacy_code FROM accounts_v1 ORDER BY id"
        )
        .await,
        ["a@x|L-17", "b@x|none"],
        "v2's insert stores the declared value in the column it cannot see"
    );
    assert_eq!(
        lines(&v2, "SELECT * FROM accounts_v2 ORDER BY id").await,
        ["1|a@x", "2|b@x"]
    );
    exec(&v2, "UPDATE accounts_v2 SET email = 'a2@x' WHERE id = 1").await;
    assert_eq!(
        lines(
            &v1,
            "SELECT email, legacy_code FROM accounts_v1 WHERE id = 1"
        )
        .await,
        ["a2@x|L-17"],
        "a v2 update leaves the hidden column alone"
    );
    exec(&v2, "DELETE FROM accounts_v2 WHERE id = 2").await;
    assert_eq!(lines(&v1, "SELECT count(*) FROM accounts_v1").await, ["1"]);
}

#[tokio::test]
async fn rename_a_column() {
    let database = with_spec(
        "CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL)",
        r#"
[[tables]]
name = "people"

[[versions]]
name = "v1"
[[versions.tables]]
base = "people"
columns = ["id", "name"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "people"
columns = ["id", { name = "full_name", from = "name" }]
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(&v1, "INSERT INTO people_v1 (name) VALUES ('Grace')").await;
    exec(&v2, "INSERT INTO people_v2 (full_name) VALUES ('Alan')").await;
    assert_eq!(
        lines(&v2, "SELECT full_name FROM people_v2 ORDER BY id").await,
        ["Grace", "Alan"]
    );
    exec(
        &v2,
        "UPDATE people_v2 SET full_name = 'Grace Hopper' WHERE full_name = 'Grace'",
    )
    .await;
    assert_eq!(
        lines(&v1, "SELECT name FROM people_v1 ORDER BY id").await,
        ["Grace Hopper", "Alan"]
    );
    assert_eq!(
        database.admin("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'people_v2'::regclass"),
        "0",
        "a rename stays auto-updatable: no trigger"
    );
}

#[tokio::test]
async fn computed_column_with_write_back() {
    let database = with_spec(
        "CREATE TABLE contacts (id serial PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL)",
        r#"
[[tables]]
name = "contacts"

[[versions]]
name = "v1"
[[versions.tables]]
base = "contacts"
columns = ["id", "first_name", "last_name"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "contacts"
columns = [
    "id",
    { name = "full_name", expr = "first_name || ' ' || last_name", write = { first_name = "split_part(NEW.full_name, ' ', 1)", last_name = "substr(NEW.full_name, length(split_part(NEW.full_name, ' ', 1)) + 2)" } },
]
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(
        &v1,
        "INSERT INTO contacts_v1 (first_name, last_name) VALUES ('Edsger', 'Dijkstra')",
    )
    .await;
    assert_eq!(
        lines(
            &v2,
            "INSERT INTO contacts_v2 (full_name) VALUES ('Ada King Lovelace') RETURNING full_name"
        )
        .await,
        ["Ada King Lovelace"]
    );
    assert_eq!(
        lines(
            &v1,
            "SELECT first_name, last_name FROM contacts_v1 ORDER BY id"
        )
        .await,
        ["Edsger|Dijkstra", "Ada|King Lovelace"]
    );
    exec(
        &v2,
        "UPDATE contacts_v2 SET full_name = 'Edsger W. Dijkstra' WHERE id = 1",
    )
    .await;
    assert_eq!(
        lines(
            &v1,
            "SELECT first_name, last_name FROM contacts_v1 WHERE id = 1"
        )
        .await,
        ["Edsger|W. Dijkstra"]
    );
    exec(
        &v1,
        "UPDATE contacts_v1 SET last_name = 'Lovelace' WHERE id = 2",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT full_name FROM contacts_v2 ORDER BY id").await,
        ["Edsger W. Dijkstra", "Ada Lovelace"]
    );
}

#[tokio::test]
async fn type_change_with_up_and_down_conversion() {
    let database = with_spec(
        "CREATE TABLE products (id serial PRIMARY KEY, title text NOT NULL, price_cents integer NOT NULL DEFAULT 0)",
        r#"
[[tables]]
name = "products"

[[versions]]
name = "v1"
[[versions.tables]]
base = "products"
columns = ["id", "title", "price_cents"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "products"
columns = [
    "id",
    "title",
    { name = "price", expr = "(price_cents / 100.0)::numeric(12,2)", write = { price_cents = "round(NEW.price * 100)::integer" }, default = "0" },
]
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(
        &v1,
        "INSERT INTO products_v1 (title, price_cents) VALUES ('book', 1999)",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO products_v2 (title, price) VALUES ('pen', 5.5)",
    )
    .await;
    exec(
        &v2,
        "INSERT INTO products_v2 (title) VALUES ('free sample')",
    )
    .await;
    assert_eq!(
        lines(&v2, "SELECT title, price FROM products_v2 ORDER BY id").await,
        ["book|19.99", "pen|5.50", "free sample|0.00"]
    );
    assert_eq!(
        lines(
            &v1,
            "SELECT title, price_cents FROM products_v1 ORDER BY id"
        )
        .await,
        ["book|1999", "pen|550", "free sample|0"]
    );
    exec(
        &v2,
        "UPDATE products_v2 SET price = 7.255 WHERE title = 'book'",
    )
    .await;
    exec(
        &v1,
        "UPDATE products_v1 SET price_cents = price_cents + 1 WHERE title = 'pen'",
    )
    .await;
    assert_eq!(
        lines(&v1, "SELECT price_cents FROM products_v1 ORDER BY id").await,
        ["726", "551", "0"]
    );
    assert_eq!(
        lines(&v2, "SELECT price FROM products_v2 ORDER BY id").await,
        ["7.26", "5.51", "0.00"]
    );
}

#[tokio::test]
async fn add_a_table_only_the_newer_version_sees() {
    let database = with_spec(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE tags (id serial PRIMARY KEY, item_id int NOT NULL REFERENCES items, label text NOT NULL)",
        r#"
[[tables]]
name = "items"
[[tables]]
name = "tags"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "name"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "items"
columns = ["id", "name"]
[[versions.tables]]
base = "tags"
columns = ["id", "item_id", "label"]
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(&v1, "INSERT INTO items_v1 (name) VALUES ('lamp')").await;
    exec(&v2, "INSERT INTO tags_v2 (item_id, label) SELECT id, 'lighting' FROM items_v2 WHERE name = 'lamp'").await;
    exec(&v2, "INSERT INTO items_v2 (name) VALUES ('desk')").await;
    assert_eq!(
        lines(
            &v2,
            "SELECT i.name, t.label FROM items_v2 i JOIN tags_v2 t ON t.item_id = i.id"
        )
        .await,
        ["lamp|lighting"]
    );
    assert_eq!(
        lines(&v1, "SELECT name FROM items_v1 ORDER BY id").await,
        ["lamp", "desk"]
    );
    assert_eq!(database.admin("SELECT to_regclass('tags_v1') IS NULL"), "t");
    let map = load_routing_map(&v1).await.expect("routing map");
    assert!(map.view_for("v1", "tags").is_none());
    assert_eq!(
        map.view_for("v2", "tags").expect("v2 has tags").view_name,
        "tags_v2"
    );
}

#[tokio::test]
async fn rename_a_table() {
    let database = with_spec(
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL)",
        r#"
[[tables]]
name = "customers"

[[versions]]
name = "v1"
[[versions.tables]]
base = "customers"
columns = ["id", "name"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "customers"
name = "clients"
columns = ["id", "name"]
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(&v1, "INSERT INTO customers_v1 (name) VALUES ('Acme')").await;
    exec(&v2, "INSERT INTO clients_v2 (name) VALUES ('Globex')").await;
    assert_eq!(
        lines(&v2, "SELECT name FROM clients_v2 ORDER BY id").await,
        ["Acme", "Globex"]
    );
    exec(&v2, "UPDATE clients_v2 SET name = 'Acme Corp' WHERE id = 1").await;
    assert_eq!(
        lines(&v1, "SELECT name FROM customers_v1 ORDER BY id").await,
        ["Acme Corp", "Globex"]
    );
    let map = load_routing_map(&v1).await.expect("routing map");
    let clients = map.view_for("v2", "clients").expect("v2 calls it clients");
    assert_eq!(
        (clients.base_table.as_str(), clients.view_name.as_str()),
        ("customers", "clients_v2")
    );
    assert!(map.view_for("v2", "customers").is_none());
    assert_eq!(
        database.admin("SELECT to_regclass('customers_v2') IS NULL"),
        "t"
    );
}

#[tokio::test]
async fn a_table_removed_in_the_newer_version() {
    let database = with_spec(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE audit_notes (id serial PRIMARY KEY, note text NOT NULL)",
        r#"
[[tables]]
name = "items"
[[tables]]
name = "audit_notes"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "name"]
[[versions.tables]]
base = "audit_notes"
columns = ["id", "note"]

[[versions]]
name = "v2"
[[versions.tables]]
base = "items"
columns = ["id", "name"]
"#,
    )
    .await;
    let (v1, v2) = (database.client().await, database.client().await);
    exec(&v1, "INSERT INTO audit_notes_v1 (note) VALUES ('checked')").await;
    exec(&v1, "INSERT INTO items_v1 (name) VALUES ('chair')").await;
    exec(&v2, "INSERT INTO items_v2 (name) VALUES ('sofa')").await;
    assert_eq!(
        lines(&v1, "SELECT name FROM items_v1 ORDER BY id").await,
        ["chair", "sofa"]
    );
    assert_eq!(
        lines(&v2, "SELECT name FROM items_v2 ORDER BY id").await,
        ["chair", "sofa"]
    );
    assert_eq!(
        lines(&v1, "SELECT note FROM audit_notes_v1").await,
        ["checked"]
    );
    let error = v2
        .simple_query("SELECT * FROM audit_notes_v2")
        .await
        .expect_err("v2 has no audit_notes");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE),
        "{error:?}"
    );
}

/// A view written through its trigger (it has an expression column) over a table with columns
/// named like the trigger function's variables: each INSERT and UPDATE through it failed
/// (42702, "could refer to either a PL/pgSQL variable or a table column"). The columns win.
#[tokio::test]
async fn columns_named_like_the_write_triggers_variables() {
    let database = with_spec(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL,
                             found boolean NOT NULL DEFAULT false, new int, old int, tg_op text)",
        r#"
[[tables]]
name = "items"

[[versions]]
name = "v1"
[[versions.tables]]
base = "items"
columns = ["id", "name", "found", "new", "old", "tg_op", { name = "shout", expr = "upper(name)" }]
"#,
    )
    .await;
    let v1 = database.client().await;
    exec(&v1, "SET viewgate.version = 'v1'").await;
    exec(
        &v1,
        "INSERT INTO items_v1 (name, found, new, old, tg_op) VALUES ('a', true, 1, 2, 'x')",
    )
    .await;
    exec(
        &v1,
        "UPDATE items_v1 SET found = false, new = 10, old = 20, tg_op = 'y' WHERE id = 1",
    )
    .await;
    assert_eq!(
        lines(
            &v1,
            "SELECT name, found, new, old, tg_op, shout FROM items_v1"
        )
        .await,
        ["a|f|10|20|y|A"]
    );
    exec(&v1, "DELETE FROM items_v1 WHERE id = 1").await;
    assert_eq!(database.admin("SELECT count(*) FROM items"), "0");
}
