// node-postgres (pg) through viewgate: simple and extended protocol, a transaction, a named
// prepared statement, and an error's SQLSTATE.
// Usage: node pg_checks.js DSN. Prints "ok <check>" per passed check; exits 1 on a mismatch.
'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');

function check(name, actual, expected) {
  assert.deepStrictEqual(actual, expected, `MISMATCH ${name}`);
  console.log(`ok ${name}`);
}

async function main() {
  const client = new Client({ connectionString: process.argv[2] });
  await client.connect();

  // Simple protocol: a query without parameters, several statements in one string.
  await client.query('DROP TABLE IF EXISTS js_items; CREATE TABLE js_items(id int PRIMARY KEY, name text, tags text[])');
  const simple = await client.query("SELECT 'simple'::text AS kind, 2 + 2 AS four");
  check('simple query', simple.rows, [{ kind: 'simple', four: 4 }]);

  // Extended protocol: parameters bound with Parse/Bind/Execute.
  for (let i = 0; i < 50; i++) {
    await client.query('INSERT INTO js_items VALUES ($1, $2, $3)', [i, `item ${i}`, ['a', `t${i}`]]);
  }
  const params = await client.query('SELECT count(*)::int AS n, sum(id)::int AS s FROM js_items WHERE id >= $1', [10]);
  check('parameterized query', params.rows[0], { n: 40, s: 1180 });
  const array = await client.query('SELECT tags FROM js_items WHERE id = $1', [7]);
  check('array parameter round-trip', array.rows[0].tags, ['a', 't7']);

  // A transaction: rollback discards, commit keeps.
  await client.query('BEGIN');
  await client.query('INSERT INTO js_items VALUES ($1, $2, $3)', [100, 'rolled back', null]);
  await client.query('ROLLBACK');
  await client.query('BEGIN');
  await client.query('INSERT INTO js_items VALUES ($1, $2, $3)', [101, 'committed', null]);
  await client.query('COMMIT');
  const txn = await client.query('SELECT id FROM js_items WHERE id >= 100 ORDER BY id');
  check('transaction commit and rollback', txn.rows.map((r) => r.id), [101]);

  // A named prepared statement: parsed once under its name, then only bound.
  for (let i = 0; i < 20; i++) {
    const res = await client.query({ name: 'by-id', text: 'SELECT name FROM js_items WHERE id = $1', values: [i] });
    assert.equal(res.rows[0].name, `item ${i}`);
  }
  const prepared = await client.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'by-id'");
  check('named prepared statement exists once server-side', prepared.rows[0].n, 1);

  // Errors carry their SQLSTATE, and the connection is usable afterwards.
  const errors = [];
  for (const [sql, values] of [
    ['INSERT INTO js_items VALUES ($1, $2, $3)', [1, 'dup', null]],
    ['SELECT * FROM no_such_table', []],
    ['SELEC 1', undefined],
  ]) {
    try {
      await client.query(sql, values);
      errors.push('no error');
    } catch (error) {
      errors.push(error.code);
    }
  }
  check('error SQLSTATEs', errors, ['23505', '42P01', '42601']);
  const alive = await client.query('SELECT $1::text AS still', ['alive']);
  check('usable after errors', alive.rows[0].still, 'alive');

  await client.end();
  console.log('pg: all checks passed');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
