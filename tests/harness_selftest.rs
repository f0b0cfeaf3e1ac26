//! Self-tests for the database test harness in `tests/common`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::mysql::MariaDbServer;
use common::pg::PgServer;
use sqlx::mysql::{MySqlConnection, MySqlPool};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};

async fn pg_roundtrip(url: &str, name: &str) {
    let pool = PgPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    sqlx::query("CREATE TABLE t (id INT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t (id, name) VALUES ($1, $2)")
        .bind(1_i32)
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
    let row = sqlx::query("SELECT id, name FROM t").fetch_one(&pool).await.unwrap();
    assert_eq!(row.get::<i32, _>("id"), 1);
    assert_eq!(row.get::<String, _>("name"), name);
    pool.close().await;
}

async fn mysql_roundtrip(url: &str, name: &str) {
    let pool = MySqlPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    sqlx::query("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t (id, name) VALUES (?, ?)")
        .bind(1_i32)
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
    let row = sqlx::query("SELECT id, name FROM t").fetch_one(&pool).await.unwrap();
    assert_eq!(row.get::<i32, _>("id"), 1);
    assert_eq!(row.get::<String, _>("name"), name);
    pool.close().await;
}

#[tokio::test]
async fn pg_shared_server_gives_isolated_fresh_dbs() {
    let server = PgServer::shared();
    eprintln!("postgres start took {:?}", server.startup_time());
    let a = server.fresh_db("selftest A");
    let b = server.fresh_db("selftest A");
    assert_ne!(a, b);
    assert!(a.starts_with("postgres://postgres@localhost:5432/selftest_a_"), "{a}");
    pg_roundtrip(&a, "alpha").await;
    pg_roundtrip(&b, "beta").await;
    assert_eq!(server.psql(&a, "SELECT id, name FROM t"), "1|alpha");
    assert_eq!(server.psql(&b, "SELECT id, name FROM t"), "1|beta");
    assert_eq!(server.psql(&a, "SHOW timezone"), "UTC");
}

#[test]
fn pg_helpers_work_without_a_runtime() {
    let server = PgServer::shared();
    let url = server.fresh_db("sync");
    let db = common::db_name_from_url(&url).unwrap();
    server.psql(&db, "CREATE TABLE x (v INT); INSERT INTO x VALUES (1), (2);");
    assert_eq!(server.psql(&url, "SELECT v FROM x ORDER BY v"), "1\n2");
    let err = server.try_psql(&db, "SELECT * FROM missing_table").unwrap_err();
    assert!(err.to_string().contains("missing_table"), "{err}");
}

#[tokio::test]
async fn pg_private_server_restarts_and_stops_on_drop() {
    let mut server = PgServer::start_private().expect("start private postgres");
    let url = server.fresh_db("private");
    pg_roundtrip(&url, "kept").await;

    let pid = server.pid().expect("server running");
    server.stop().unwrap();
    assert!(!common::pid_alive(pid));
    assert!(!server.is_running());
    assert!(PgConnection::connect(&url).await.is_err());
    server.restart().unwrap();
    assert_eq!(server.psql(&url, "SELECT name FROM t"), "kept");

    let pid = server.pid().expect("server running again");
    let socket = server.socket_path();
    let dir = server.dir().to_owned();
    assert!(socket.exists());
    drop(server);
    assert!(!common::pid_alive(pid), "postmaster {pid} still alive after drop");
    assert!(!socket.exists());
    assert!(!dir.exists());
}

#[tokio::test]
async fn mariadb_shared_server_gives_isolated_fresh_dbs() {
    let server = MariaDbServer::shared();
    eprintln!("mariadb start took {:?}", server.startup_time());
    let a = server.fresh_db("selftest-A");
    let b = server.fresh_db("selftest-A");
    assert_ne!(a, b);
    assert!(a.starts_with("mysql://root@localhost/selftest_a_"), "{a}");
    assert!(a.contains("?socket=/"), "{a}");
    mysql_roundtrip(&a, "alpha").await;
    mysql_roundtrip(&b, "beta").await;
    assert_eq!(server.mysql(&a, "SELECT id, name FROM t"), "1\talpha");
    assert_eq!(server.mysql(&b, "SELECT id, name FROM t"), "1\tbeta");
    assert_eq!(
        server.mysql(&a, "SELECT @@time_zone, @@character_set_server"),
        "+00:00\tutf8mb4"
    );
}

#[test]
fn mariadb_helpers_work_without_a_runtime() {
    let server = MariaDbServer::shared();
    let url = server.fresh_db("sync");
    let db = common::db_name_from_url(&url).unwrap();
    server.mysql(&db, "CREATE TABLE x (v INT); INSERT INTO x VALUES (1), (2);");
    assert_eq!(server.mysql(&url, "SELECT v FROM x ORDER BY v"), "1\n2");
    let err = server.try_mysql(&db, "SELECT * FROM missing_table").unwrap_err();
    assert!(err.to_string().contains("missing_table"), "{err}");
}

#[tokio::test]
async fn mariadb_private_server_restarts_and_stops_on_drop() {
    let mut server = MariaDbServer::start_private().expect("start private mariadb");
    let url = server.fresh_db("private");
    mysql_roundtrip(&url, "kept").await;

    let pid = server.pid().expect("server running");
    server.stop().unwrap();
    assert!(!common::pid_alive(pid));
    assert!(!server.is_running());
    assert!(MySqlConnection::connect(&url).await.is_err());
    server.restart().unwrap();
    assert_eq!(server.mysql(&url, "SELECT name FROM t"), "kept");

    let pid = server.pid().expect("server running again");
    let socket = server.socket_path();
    let dir = server.dir().to_owned();
    assert!(socket.exists());
    drop(server);
    assert!(!common::pid_alive(pid), "mariadbd {pid} still alive after drop");
    assert!(!socket.exists());
    assert!(!dir.exists());
}

/// Run by `shared_servers_stop_when_the_test_process_exits` in a child
/// process: starts both shared servers, prints where they are, and exits.
#[test]
#[ignore = "helper, run by shared_servers_stop_when_the_test_process_exits"]
fn watchdog_child() {
    if std::env::var_os("CUTOVER_WATCHDOG_CHILD").is_none() {
        return;
    }
    let pg = PgServer::shared();
    let my = MariaDbServer::shared();
    pg.psql("postgres", "SELECT 1");
    my.mysql("mysql", "SELECT 1");
    println!("\n@@server {} {}", pg.pid().unwrap(), pg.dir().display());
    println!("\n@@server {} {}", my.pid().unwrap(), my.dir().display());
}

#[test]
fn shared_servers_stop_when_the_test_process_exits() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "watchdog_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CUTOVER_WATCHDOG_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let servers: Vec<(u32, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("@@server "))
        .map(|l| {
            let mut parts = l.split(' ');
            (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(servers.len(), 2, "{stdout}");
    for (pid, dir) in servers {
        let gone = common::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            !common::pid_alive(pid) && !std::path::Path::new(&dir).exists()
        });
        assert!(gone, "server {pid} in {dir} still there after its test process exited");
    }
}
