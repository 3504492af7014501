// pgJDBC's DatabaseMetaData through viewgate: each version sees its own model_metadata.
// Java services reflect the schema through DatabaseMetaData (Hibernate's schema validation,
// Flyway, tools): getColumns and getPrimaryKeys read pg_catalog with LIKE patterns on the
// table's name. Usage: java -cp postgresql.jar:classes ReflectChecks JDBC_URL (the proxy's
// default version is v1; the v2 connection declares itself with options=-c viewgate.version=v2).
// Prints "ok <check>" per passed check; exits 1 on the first mismatch.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

public class ReflectChecks {
    static void check(String name, Object actual, Object expected) {
        if (!Objects.deepEquals(actual, expected)) {
            System.out.println("MISMATCH " + name + ": got " + actual + ", expected " + expected);
            System.exit(1);
        }
        System.out.println("ok " + name);
    }

    /** "name type nullable default" per column, in order. */
    static List<String> columns(DatabaseMetaData meta) throws Exception {
        List<String> found = new ArrayList<>();
        try (ResultSet rs = meta.getColumns(null, "public", "model_metadata", null)) {
            while (rs.next()) {
                found.add(rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME") + " "
                        + rs.getString("TYPE_NAME") + " " + rs.getString("IS_NULLABLE") + " "
                        + rs.getString("COLUMN_DEF"));
            }
        }
        return found;
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        String id = "1 id bigserial NO nextval('model_metadata_id_seq'::regclass)";
        List<String> v1 = List.of(id, "2 model_name text NO null", "3 model_version text NO null",
                "4 hyperparameters jsonb NO '{}'::jsonb", "5 created_at timestamptz NO now()");
        List<String> v2 = List.of(id, "2 model_name text NO null", "3 model_version text NO null",
                "4 model_type text YES null", "5 hyperparameters jsonb NO '{}'::jsonb",
                "6 created_at timestamptz NO now()", "7 schema_version int4 NO 1");
        // Comments go to the base table (DDL passes through unchanged); each version's table
        // shows them on the columns it has as base columns (REMARKS).
        try (Connection conn = DriverManager.getConnection(url); Statement st = conn.createStatement()) {
            st.execute("COMMENT ON TABLE model_metadata IS 'Model registry'");
            st.execute("COMMENT ON COLUMN model_metadata.model_name IS 'Name of the model'");
        }
        for (String version : List.of("v1", "v2")) {
            String versioned = url + "&options=-c%20viewgate.version%3D" + version;
            try (Connection conn = DriverManager.getConnection(versioned)) {
                try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SHOW viewgate.version")) {
                    rs.next();
                    check(version + " session", rs.getString(1), version);
                }
                DatabaseMetaData meta = conn.getMetaData();
                check(version + " getColumns", columns(meta), version.equals("v1") ? v1 : v2);

                List<String> remarks = new ArrayList<>();
                try (ResultSet rs = meta.getColumns(null, "public", "model_metadata", null)) {
                    while (rs.next()) {
                        if (rs.getString("REMARKS") != null) {
                            remarks.add(rs.getString("COLUMN_NAME") + ": " + rs.getString("REMARKS"));
                        }
                    }
                }
                check(version + " getColumns REMARKS", remarks, List.of("model_name: Name of the model"));
                try (ResultSet rs = meta.getTables(null, "public", "model_metadata", new String[] {"TABLE"})) {
                    check(version + " getTables REMARKS", rs.next() ? rs.getString("REMARKS") : null, "Model registry");
                }

                List<String> keys = new ArrayList<>();
                try (ResultSet rs = meta.getPrimaryKeys(null, "public", "model_metadata")) {
                    while (rs.next()) {
                        keys.add(rs.getString("COLUMN_NAME") + " " + rs.getShort("KEY_SEQ") + " " + rs.getString("PK_NAME"));
                    }
                }
                check(version + " getPrimaryKeys", keys, List.of("id 1 model_metadata_pkey"));

                List<String> tables = new ArrayList<>();
                try (ResultSet rs = meta.getTables(null, "public", "model_metadata%", new String[] {"TABLE", "VIEW"})) {
                    while (rs.next()) {
                        tables.add(rs.getString("TABLE_NAME") + " " + rs.getString("TABLE_TYPE"));
                    }
                }
                // Another version's view is not listed: its columns are not this version's.
                check(version + " getTables", tables, List.of("model_metadata TABLE"));

                List<String> unique = new ArrayList<>();
                try (ResultSet rs = meta.getIndexInfo(null, "public", "model_metadata", true, false)) {
                    while (rs.next()) {
                        if (rs.getString("INDEX_NAME") != null) {
                            unique.add(rs.getString("INDEX_NAME") + " " + rs.getString("COLUMN_NAME"));
                        }
                    }
                }
                check(version + " getIndexInfo", unique, List.of("model_metadata_pkey id"));
            }
        }
        System.out.println("jdbc reflection: all checks passed");
    }
}
