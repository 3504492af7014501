// pgJDBC's ApplicationName through viewgate: the driver sends it as a SET once connected
// (unless assumeMinServerVersion is 9.0 or later, when it goes in the startup packet).
// Usage: java -cp postgresql.jar:classes ApplicationName JDBC_URL. Prints, for each way,
// "<way> <application_name> <viewgate.version>".

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;

public class ApplicationName {
    static String first(Connection conn, String sql) throws Exception {
        try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = args[0] + "&ApplicationName=billing-svc";
        String[][] ways = {{"set", url}, {"startup", url + "&assumeMinServerVersion=9.0"}};
        for (String[] way : ways) {
            try (Connection conn = DriverManager.getConnection(way[1])) {
                System.out.println(way[0] + " " + first(conn, "SHOW application_name") + " "
                        + first(conn, "SHOW viewgate.version"));
            }
        }
    }
}
