//! TLS to a real, throwaway PostgreSQL that takes TCP connections with TLS only: naast's
//! connections are encrypted, and the server's certificate is checked as libpq's `verify-full`
//! does (a CA naast trusts, the host name); URLs asking for what naast does not do are refused
//! before anything connects, naming the option.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_pg_cluster::Cluster;
use naast_postgres::{ANSWER_WITHIN, Database, error_text};

/// Connects with `url` and asks the server whether this connection is encrypted.
fn encrypted(url: &str) -> Result<bool, String> {
    let db = Database::new(url)?;
    let settings = db.settings().clone();
    db.block(ANSWER_WITHIN, async move {
        let client = Database::connect(&settings)
            .await
            .map_err(|e| error_text(&e))?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| error_text(&e))?;
        Ok(row.get(0))
    })
}

#[test]
fn connections_are_encrypted_and_the_servers_certificate_is_checked() {
    let cluster = Cluster::start_with_tls();
    let database = cluster.new_database();
    let ca = cluster.ca_file();
    let ca = ca.to_str().unwrap();
    let localhost = cluster.tcp_url("localhost", &database);

    for mode in ["require", "verify-full", "verify-ca"] {
        assert_eq!(
            encrypted(&format!("{localhost}?sslmode={mode}&sslrootcert={ca}")),
            Ok(true),
            "sslmode={mode}"
        );
    }

    // The cluster's CA is not a public one: without it, the certificate is not trusted.
    let refused = encrypted(&format!("{localhost}?sslmode=require")).unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    // The certificate names `localhost`, not the address: refused.
    let by_address = cluster.tcp_url("127.0.0.1", &database);
    let refused = encrypted(&format!("{by_address}?sslmode=require&sslrootcert={ca}")).unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    // The server takes no unencrypted TCP connection, so the ones above were encrypted.
    let refused = encrypted(&localhost).unwrap_err();
    assert!(refused.contains("no encryption"), "{refused}");
}

#[test]
fn urls_asking_for_what_naast_does_not_do_are_refused_naming_the_option() {
    let base = "postgresql://naast@db.example.nl/naast";
    for (query, named) in [
        ("sslmode=prefer", "sslmode=prefer"),
        ("sslmode=allow", "sslmode=allow"),
        ("sslmode=require&sslcert=/etc/naast/client.crt", "sslcert"),
        ("sslmode=require&sslkey=/etc/naast/client.key", "sslkey"),
        ("sslrootcert=/etc/naast/ca.pem", "sslrootcert"),
        (
            "sslmode=require&sslrootcert=/nonexistent/ca.pem",
            "sslrootcert",
        ),
        ("sslmode=sometimes", "sslmode"),
    ] {
        let refused = Database::new(&format!("{base}?{query}"))
            .err()
            .unwrap_or_else(|| panic!("{query} was taken"));
        assert!(refused.contains(named), "{query}: {refused}");
    }
    let empty = tempfile::NamedTempFile::new().unwrap();
    let path = empty.path().to_str().unwrap();
    let refused = Database::new(&format!("{base}?sslmode=require&sslrootcert={path}"))
        .err()
        .expect("a CA file without a certificate");
    assert!(refused.contains("no certificate"), "{refused}");
    // What it does take, unconnected.
    for query in [
        "",
        "?sslmode=disable",
        "?sslmode=require",
        "?application_name=naast",
    ] {
        assert!(Database::new(&format!("{base}{query}")).is_ok(), "{query}");
    }
}

#[test]
fn tls_options_are_read_from_the_query_only_and_percent_decoded_only() {
    // A `?` in the password (unencoded) is not the query's start: `prefer` is still refused.
    let refused = Database::new("postgresql://naast:ge?heim@db.example.nl/naast?sslmode=prefer")
        .err()
        .expect("prefer behind a password with a question mark");
    assert!(refused.contains("sslmode=prefer"), "{refused}");
    assert!(
        !refused.contains("geheim") && !refused.contains("ge?heim"),
        "{refused}"
    );
    // A `+` in a file name is a `+` (libpq's reading), `%20` a space.
    let dir = tempfile::tempdir().unwrap();
    let refused = Database::new(&format!(
        "postgresql://naast@db.example.nl/naast?sslmode=require&sslrootcert={}/pg+ca%20x.pem",
        dir.path().display()
    ))
    .err()
    .expect("no such file");
    assert!(refused.contains("pg+ca x.pem"), "{refused}");
}
