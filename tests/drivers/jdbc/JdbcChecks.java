// pgJDBC through viewgate: server-side prepare past prepareThreshold, batch insert, a
// transaction, binary transfer, error SQLSTATEs and a query timeout (CancelRequest).
// Usage: java -cp postgresql.jar:classes JdbcChecks JDBC_URL. Prints "ok <check>" per passed
// check; exits 1 on the first mismatch.

import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.Instant;
import java.util.Arrays;
import java.util.Objects;
import org.postgresql.PGStatement;

public class JdbcChecks {
    static void check(String name, Object actual, Object expected) {
        if (!Objects.deepEquals(actual, expected)) {
            System.out.println("MISMATCH " + name + ": got " + actual + ", expected " + expected);
            System.exit(1);
        }
        System.out.println("ok " + name);
    }

    static long count(Connection conn, String sql) throws SQLException {
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        try (Connection conn = DriverManager.getConnection(url + "&prepareThreshold=5")) {
            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_items");
                st.execute("CREATE TABLE jdbc_items(id int PRIMARY KEY, name text, price float8)");
            }

            // Reused past prepareThreshold: from the 5th execution on, a named server-side statement.
            try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int4 * 2")) {
                boolean serverPrepared = false;
                for (int i = 0; i < 50; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        if (rs.getInt(1) != i * 2) {
                            check("prepared result " + i, rs.getInt(1), i * 2);
                        }
                    }
                    serverPrepared = ps.unwrap(PGStatement.class).isUseServerPrepare();
                }
                check("statement uses a server-side prepare after the threshold", serverPrepared, true);
                check("one named server-side statement",
                        count(conn, "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int4 * 2'"), 1L);
            }

            // Batch insert.
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?, ?)")) {
                for (int i = 0; i < 1000; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "item " + i);
                    ps.setDouble(3, i / 4.0);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                check("batch update counts", counts.length == 1000 && Arrays.stream(counts).allMatch(c -> c == 1), true);
            }
            check("batch rows", count(conn, "SELECT count(*) FROM jdbc_items"), 1000L);
            check("batch id sum", count(conn, "SELECT sum(id) FROM jdbc_items"), 499500L);

            // Transaction: rollback discards, commit keeps; another connection agrees.
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.executeUpdate("INSERT INTO jdbc_items VALUES (5000, 'rolled back', 0)");
                conn.rollback();
                st.executeUpdate("INSERT INTO jdbc_items VALUES (5001, 'committed', 0)");
                conn.commit();
            }
            conn.setAutoCommit(true);
            try (Connection other = DriverManager.getConnection(url)) {
                check("transaction seen by another session",
                        count(other, "SELECT count(*) FROM jdbc_items WHERE id >= 5000"), 1L);
                check("committed row", count(other, "SELECT max(id) FROM jdbc_items"), 5001L);
            }

            // Errors carry their SQLSTATE; the session carries on.
            String[] states = new String[3];
            String[] failing = {
                "INSERT INTO jdbc_items VALUES (1, 'dup', 0)",
                "SELECT * FROM no_such_table",
                "SELECT 1/0",
            };
            for (int i = 0; i < failing.length; i++) {
                try (Statement st = conn.createStatement()) {
                    st.execute(failing[i]);
                    states[i] = "no error";
                } catch (SQLException e) {
                    states[i] = e.getSQLState();
                }
            }
            check("error SQLSTATEs", states, new String[] {"23505", "42P01", "22012"});
            check("usable after errors", count(conn, "SELECT 7"), 7L);

            // A query timeout makes pgJDBC send a CancelRequest with the key the proxy issued.
            long started = System.nanoTime();
            String cancelState;
            try (Statement st = conn.createStatement()) {
                st.setQueryTimeout(1);
                st.execute("SELECT pg_sleep(30)");
                cancelState = "no error";
            } catch (SQLException e) {
                cancelState = e.getSQLState();
            }
            check("query timeout SQLSTATE", cancelState, "57014");
            check("cancelled promptly", (System.nanoTime() - started) / 1_000_000_000L < 5, true);
            check("usable after cancel", count(conn, "SELECT 8"), 8L);
        }

        // Binary transfer: prepareThreshold=-1 prepares at once and asks for binary results.
        try (Connection conn = DriverManager.getConnection(url + "&prepareThreshold=-1&binaryTransfer=true");
                PreparedStatement ps = conn.prepareStatement(
                        "SELECT ?::int8, ?::float8, ?::bytea, ARRAY[1, NULL, 3]::int4[], ?::timestamptz, ?::text")) {
            byte[] bytes = new byte[70000];
            for (int i = 0; i < bytes.length; i++) {
                bytes[i] = (byte) i;
            }
            Timestamp at = Timestamp.from(Instant.parse("2024-02-29T12:34:56.789123Z"));
            ps.setLong(1, Long.MIN_VALUE);
            ps.setDouble(2, -1.5e300);
            ps.setBytes(3, bytes);
            ps.setTimestamp(4, at);
            ps.setString(5, "héllo wörld");
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                check("binary int8", rs.getLong(1), Long.MIN_VALUE);
                check("binary float8", rs.getDouble(2), -1.5e300);
                check("binary bytea", rs.getBytes(3), bytes);
                Array array = rs.getArray(4);
                check("binary int4[]", array.getArray(), new Integer[] {1, null, 3});
                check("binary timestamptz", rs.getTimestamp(5).toInstant(), at.toInstant());
                check("text", rs.getString(6), "héllo wörld");
            }
            check("binary statement server-prepared", ps.unwrap(PGStatement.class).isUseServerPrepare(), true);
        }
        System.out.println("jdbc: all checks passed");
    }
}
